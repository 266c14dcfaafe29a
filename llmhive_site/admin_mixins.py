"""Admin building blocks shared by the apps."""

from __future__ import annotations


class ReadOnlyMixin:
    """Records written by jobs or the ledger: readable, never added, changed or deleted by hand.
    For ModelAdmin and inlines alike (inlines pass `obj` to has_add_permission)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
