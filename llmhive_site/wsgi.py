import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmhive_site.settings")
application = get_wsgi_application()

from core import heap  # noqa: E402 (after the application: Django's settings are loaded)

heap.serving()
