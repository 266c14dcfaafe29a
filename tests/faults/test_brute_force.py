"""Brute force on the admin login, against a real gunicorn with production settings: 200 wrong
passwords in a row for one user from one address. The pair is locked out after the limit, the
right password is refused while locked, another user and another address are unaffected, and the
documented command (`manage.py axes_reset_username`) unlocks it."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest
from django.contrib.auth import get_user_model

from tests.servers import ROOT, gunicorn, project_env

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 200
LIMIT = 5
PASSWORD = "the-right-password-for-ops-1"
ATTACKER = "203.0.113.7"
COLLEAGUE = "198.51.100.2"
SERVER_ENV = {
    # The proxy in front of gunicorn names the client's address in X-Real-IP.
    "LLMHIVE_CLIENT_IP_HEADER": "HTTP_X_REAL_IP",
    "LLMHIVE_LOGIN_FAILURE_LIMIT": str(LIMIT),
    # Every refused sign-in logs a warning; tests.servers never reads gunicorn's output, and 200
    # warnings fill the pipe (64 KB) until the workers block writing to it.
    "LLMHIVE_LOG_LEVEL": "ERROR",
}


class LoginForm:
    """The admin's sign-in form from one address, as a browser uses it (CSRF cookie and token)."""

    def __init__(self, base: str, address: str) -> None:
        self.http = httpx.Client(base_url=base, headers={"X-Real-IP": address}, timeout=30)
        form = self.http.get("/admin/login/")
        self.token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)

    def submit(self, username: str, password: str) -> httpx.Response:
        data = {"csrfmiddlewaretoken": self.token, "username": username, "password": password, "next": "/admin/"}
        self.http.cookies.delete("sessionid")
        return self.http.post("/admin/login/?next=/admin/", data=data)


def attempt(base: str, username: str, password: str, address: str) -> httpx.Response:
    return LoginForm(base, address).submit(username, password)


def signed_in(response: httpx.Response) -> bool:
    return response.status_code == 302 and "sessionid" in response.cookies


def locked_out(response: httpx.Response) -> bool:
    return response.status_code == 429 and "Sign-in locked" in response.text


def test_two_hundred_wrong_passwords_lock_the_pair_out_until_reset():
    User = get_user_model()
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    User.objects.create_superuser("finance", "finance@example.com", PASSWORD)

    with gunicorn(workers=2, **SERVER_ENV) as base:
        attacker = LoginForm(base, ATTACKER)
        started = time.monotonic()
        answers = [attacker.submit("ops", f"guess-{n}") for n in range(ATTEMPTS)]
        elapsed = time.monotonic() - started
        let_through = sum(1 for a in answers if a.status_code == 200 and "correct username" in a.text)
        refused = sum(1 for a in answers if locked_out(a))
        first_lockout = next(i for i, a in enumerate(answers) if locked_out(a)) + 1

        assert let_through + refused == ATTEMPTS, {a.status_code for a in answers}
        assert let_through < LIMIT and first_lockout == LIMIT
        assert "axes_reset_username" in answers[-1].text

        right_while_locked = attempt(base, "ops", PASSWORD, ATTACKER)
        assert locked_out(right_while_locked) and not signed_in(right_while_locked)
        # The lock is on the pair: ops elsewhere, and another user from the attacker's address, sign in.
        assert signed_in(attempt(base, "ops", PASSWORD, COLLEAGUE))
        assert signed_in(attempt(base, "finance", PASSWORD, ATTACKER))

        reset = subprocess.run(
            [sys.executable, "manage.py", "axes_reset_username", "ops"],
            cwd=ROOT,
            env=project_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reset.returncode == 0, reset.stdout + reset.stderr
        after_reset = attempt(base, "ops", PASSWORD, ATTACKER)
        assert signed_in(after_reset), after_reset.status_code

    print(
        f'\nbrute force: {ATTEMPTS} wrong passwords in {elapsed:.1f} s; {let_through} answered "wrong password", '
        f"locked from attempt {first_lockout}, {refused} refused (429); right password while "
        f"locked: {right_while_locked.status_code}; other address and other user: signed in; "
        f"after `axes_reset_username ops`: signed in ({reset.stdout.strip()})"
    )
