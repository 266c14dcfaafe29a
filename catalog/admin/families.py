"""The families and categories admin: editing a family re-classifies the catalog; discovered
categories wait here, proposed, until a curator adopts or retires them."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from catalog.admin.common import EMPTY
from catalog.apply import reclassify_models
from catalog.models import CATALOG_VERSION, AlertKind, Category, CategoryState, Family
from catalog.selectors import families_with_counts
from core.admin_mixins import plural
from core.models import Alert, DataVersion


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


class CategoryStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return CategoryState.choices

    def queryset(self, request, queryset):
        if self.value() == CategoryState.ACTIVE:
            return queryset.filter(active=True)
        if self.value() == CategoryState.PROPOSED:
            return queryset.filter(active=False, proposed=True)
        if self.value() == CategoryState.RETIRED:
            return queryset.filter(active=False, proposed=False)
        return queryset


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "state", "active", "source", "seen_count", "last_seen_at", "first_seen_at")
    list_editable = ("active",)
    list_filter = (CategoryStateFilter, "source")
    search_fields = ("slug", "name")
    fields = ("slug", "name", "active", "state", "source", "first_seen_at", "last_seen_at", "seen_count")
    readonly_fields = ("state", "source", "first_seen_at", "last_seen_at", "seen_count")
    actions = ("adopt_categories", "retire_categories")

    @admin.display(description="state")
    def state(self, obj: Category) -> str:
        return CategoryState(obj.state).label

    def save_model(self, request, obj, form, change):
        # Ticking "active" on a proposed category adopts it.
        if obj.active:
            obj.proposed = False
        super().save_model(request, obj, form, change)

    @admin.action(description="Adopt selected categories (route and research them)", permissions=["change"])
    def adopt_categories(self, request: HttpRequest, queryset) -> None:
        changed = self._settle(queryset.exclude(active=True), active=True)
        self.message_user(request, f"Adopted {plural(changed, 'category', 'categories')}.", messages.SUCCESS)

    @admin.action(description="Retire selected categories (never proposed again)", permissions=["change"])
    def retire_categories(self, request: HttpRequest, queryset) -> None:
        changed = self._settle(queryset.exclude(active=False, proposed=False), active=False)
        self.message_user(request, f"Retired {plural(changed, 'category', 'categories')}.", messages.SUCCESS)

    @staticmethod
    def _settle(queryset, *, active: bool) -> int:
        """Adopt or retire: either way the category is no longer proposed, and its
        `new_category` alert has been answered."""
        slugs = list(queryset.values_list("slug", flat=True))
        changed = Category.objects.filter(slug__in=slugs).update(active=active, proposed=False)
        if changed:
            Alert.objects.open().filter(
                kind=AlertKind.NEW_CATEGORY, key__in=[f"{AlertKind.NEW_CATEGORY}:{slug}" for slug in slugs]
            ).update(acknowledged_at=timezone.now())
            DataVersion.bump(CATALOG_VERSION)  # no save signal on update(): routing's categories moved
        return changed
