"""The families and categories admin: editing a family re-classifies the catalog."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from catalog.admin.common import EMPTY
from catalog.apply import reclassify_models
from catalog.models import Category, Family
from catalog.selectors import families_with_counts
from core.admin_mixins import plural


class FamilyForm(forms.ModelForm):
    class Meta:
        model = Family
        fields = ("slug", "name", "pattern", "priority", "vendor")

    def clean_pattern(self) -> str:
        pattern = self.cleaned_data["pattern"].strip()
        if "/" not in pattern and "*" not in pattern:
            raise forms.ValidationError(
                "The pattern is a glob on the model id and must contain “/” or “*”, "
                "for example openai/gpt-5.2* or anthropic/claude-*-4.5*.",
                code="not_a_glob",
            )
        return pattern


@admin.register(Family)
class FamilyAdmin(admin.ModelAdmin):
    form = FamilyForm
    list_display = ("slug", "name", "pattern", "priority", "vendor", "model_count", "active_count")
    list_display_links = ("slug", "name")
    search_fields = ("slug", "name", "pattern", "vendor")
    readonly_fields = ("matching_models",)
    fields = ("slug", "name", "pattern", "priority", "vendor", "matching_models")

    def get_queryset(self, request):
        return families_with_counts()

    @admin.display(description="models", ordering="model_count")
    def model_count(self, obj: Family) -> str:
        url = reverse("admin:catalog_catalogmodel_changelist") + f"?family={obj.slug}"
        return format_html('<a href="{}">{}</a>', url, obj.model_count)

    @admin.display(description="active", ordering="active_count")
    def active_count(self, obj: Family) -> int:
        return obj.active_count

    @admin.display(description="models in this family")
    def matching_models(self, obj: Family) -> str:
        if obj.pk is None:
            return EMPTY
        ids = list(obj.models.order_by("id").values_list("id", flat=True)[:51])
        if not ids:
            return EMPTY
        text = ", ".join(ids[:50])
        if len(ids) > 50:
            text += ", …"
        return text

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._reclassify(request)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._reclassify(request)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        self._reclassify(request)

    def _reclassify(self, request: HttpRequest) -> None:
        moved = reclassify_models()
        self.message_user(
            request, f"Re-classified the catalog: {plural(moved, 'model')} changed family.", messages.INFO
        )


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "active")
    list_editable = ("active",)
    list_filter = ("active",)
    search_fields = ("slug", "name")
