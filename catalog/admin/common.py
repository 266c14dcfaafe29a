"""What the catalog admin's modules share: constants and read-only bases."""

from __future__ import annotations

from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from core.admin_mixins import EmptyMessageInline, ReadOnlyMixin

EMPTY = "—"
PRICE_HISTORY_LIMIT = 20


class NewestFirstFormSet(BaseInlineFormSet):
    """Shows the newest rows only: a model's price history grows with every sync."""

    limit = PRICE_HISTORY_LIMIT

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset().order_by("-observed_at", "-id")[: self.limit]
        return self._queryset


class ReadOnlyInline(EmptyMessageInline, ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False
    # Each row's str() above it repeats its columns, with the stored prices' 14 decimals.
    classes = ("without-original",)

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Records written by jobs: readable, never edited by hand."""
