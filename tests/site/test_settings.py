"""Settings fail loudly: a value the process cannot use stops it with one readable line, instead
of quietly becoming a default (`LLMHIVE_HTTPS=ture` used to turn HSTS off)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "llmhive.example.com"}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "SECRET_KEY", "LLMHIVE_HTTPS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_misspelt_boolean_refuses_to_start_with_one_line():
    result = manage("check", **PRODUCTION, LLMHIVE_HTTPS="ture")

    assert result.returncode != 0
    assert result.stderr.strip() == (
        "llmhive: cannot start: LLMHIVE_HTTPS='ture' is not a boolean: use one of 1, true, yes, on, 0, false, no, off"
    )


@pytest.mark.parametrize("value", ["false", "OFF", "0", "no"])
def test_every_spelling_of_false_turns_https_off(value):
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS)",
        **PRODUCTION,
        LLMHIVE_HTTPS=value,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_without_a_secret_key_and_with_debug_off_it_refuses_to_start():
    result = manage("check", DEBUG="false", ALLOWED_HOSTS="llmhive.example.com")

    assert result.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_debug_on_the_development_key_still_serves_a_laptop():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY.startswith('django-insecure'))",
        DEBUG="true",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(
    ("old", "new"),
    [("LOG_LEVEL", "LLMHIVE_LOG_LEVEL"), ("LLMHIVE_HEALTH_CATALOG_GRACE_MINUTES", "LLMHIVE_CATALOG_GRACE_MINUTES")],
)
def test_a_knob_set_under_its_old_name_is_an_error_naming_the_new_one(old, new):
    result = manage("check", DEBUG="true", **{old: "5"})

    assert result.returncode != 0
    assert result.stderr.strip() == f"llmhive: cannot start: {old} is no longer read: set {new} instead"


def test_a_number_that_is_not_one_is_named():
    result = manage("check", DEBUG="true", LLMHIVE_HEALTH_TOP="twenty")

    assert result.returncode != 0
    assert "LLMHIVE_HEALTH_TOP='twenty' is not a whole number" in result.stderr


def test_the_mail_server_for_alert_e_mails_comes_from_the_environment():
    shown = "from django.conf import settings as s; print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)"
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        shown,
        DEBUG="true",
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_USE_TLS="yes",
        DEFAULT_FROM_EMAIL="alerts@example.com",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["smtp.example.com", "587", "True", "alerts@example.com"]
