from django.contrib import admin
from django.urls import path

from llmhive_site.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
