"""The admin site: its index is the dashboard; it adds the capability matrix and ranking pages."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import path

from catalog.models import CAPABILITIES, Category, Family, ModelStatus
from catalog.selectors import current_rankings_queryset
from llmhive_site.dashboard import build_dashboard, capability_matrix


class LLMHiveAdminSite(admin.AdminSite):
    site_header = "LLMHive"
    site_title = "LLMHive admin"
    index_title = "Dashboard"
    index_template = "admin/llmhive/index.html"
    # "View site" pointed to /, which nothing serves (a 404): the API's docs are the site.
    site_url = "/api/docs"
    # The navigation sidebar took 290 of a 1,400 px window from every list page, whose key
    # columns then scrolled out of sight; the dashboard (the index) and the breadcrumbs lead to
    # every page instead.
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context=None):
        context = {"dashboard": build_dashboard(), **(extra_context or {})}
        return super().index(request, extra_context=context)

    def get_urls(self):
        extra = [
            path("capabilities/", self.admin_view(self.capability_matrix_view), name="capability_matrix"),
            path("rankings/", self.admin_view(self.rankings_view), name="category_rankings"),
        ]
        return extra + super().get_urls()

    def capability_matrix_view(self, request: HttpRequest):
        filters = {key: request.GET.get(key) or None for key in ("family", "category", "status")}
        rows, totals = capability_matrix(**filters)
        context = {
            **self.each_context(request),
            "title": "Capability matrix",
            "capabilities": [c.removeprefix("supports_").replace("_", " ") for c in CAPABILITIES],
            "rows": rows,
            "totals": totals,
            "filters": filters,
            "families": Family.objects.all(),
            "categories": Category.objects.filter(active=True),
            "statuses": ModelStatus.choices,
        }
        return render(request, "admin/llmhive/capability_matrix.html", context)

    def rankings_view(self, request: HttpRequest):
        categories = list(Category.objects.filter(active=True))
        slug = request.GET.get("category") or (categories[0].slug if categories else None)
        rows = []
        if slug:
            rows = list(
                current_rankings_queryset().filter(category__slug=slug).select_related("model__family").order_by("rank")
            )
        context = {
            **self.each_context(request),
            "title": "Category rankings",
            "categories": categories,
            "selected": slug,
            "rows": rows,
            "observed_at": rows[0].observed_at if rows else None,
        }
        return render(request, "admin/llmhive/rankings.html", context)
