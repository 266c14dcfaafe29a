"""Admin building blocks shared by the apps."""

from __future__ import annotations

import json

from django.utils.html import format_html


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


def pretty_json(value) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


class ReadOnlyMixin:
    """Records written by jobs or the ledger: readable, never added, changed or deleted by hand.
    For ModelAdmin and inlines alike (inlines pass `obj` to has_add_permission)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EmptyMessageInline:
    """A tabular inline that says it is empty ("No price changes recorded.") instead of showing
    bare column headers; `empty_message` overrides the sentence made from the verbose name."""

    template = "admin/edit_inline/tabular_or_empty.html"
    empty_message = ""

    def get_empty_message(self) -> str:
        return self.empty_message or f"No {self.verbose_name_plural} recorded."
