import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin login if there is none, and print it (the password is kept in var/admin-login.txt)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("LLMHIVE_ADMIN_USER", "admin"))

    def handle(self, *args, username: str, **options) -> str:
        User = get_user_model()
        login_file = Path(settings.VAR_DIR) / "admin-login.txt"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("LLMHIVE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            login_file.parent.mkdir(parents=True, exist_ok=True)
            login_file.write_text(f"{username}\n{password}\n")
            login_file.chmod(0o600)
            return f"admin login created: user {username}, password {password}"
        if login_file.exists():
            saved_user, saved_password = (login_file.read_text().splitlines() + ["", ""])[:2]
            if saved_user == username and user.check_password(saved_password):
                return f"admin login: user {username}, password {saved_password}"
        return f"admin login: user {username} (password unchanged; reset it with `manage.py changepassword {username}`)"
