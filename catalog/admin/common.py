"""What the catalog admin's modules share: formatting helpers and read-only bases.

Importing this module also sets the admin site's titles (module-level code kept from the former
catalog/admin.py)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html

from llmhive_site.admin_mixins import ReadOnlyMixin

admin.site.site_header = "LLMHive"
admin.site.site_title = "LLMHive"
admin.site.index_title = "Control plane"

EMPTY = "—"
PRICE_HISTORY_LIMIT = 20


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


def pretty_json(value) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


class NewestFirstFormSet(BaseInlineFormSet):
    """Shows the newest rows only: a model's price history grows with every sync."""

    limit = PRICE_HISTORY_LIMIT

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset().order_by("-observed_at", "-id")[: self.limit]
        return self._queryset


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Records written by jobs: readable, never edited by hand."""
