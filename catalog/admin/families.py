"""The families and categories admin: editing a family re-classifies the catalog; family
suggestions are accepted (as they are or edited first) or rejected; discovered categories wait,
proposed, until a curator adopts or retires them."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from catalog.admin.common import EMPTY
from catalog.apply import reclassify_models
from catalog.families import AcceptError, accept, reject
from catalog.models import (
    CATALOG_VERSION,
    AlertKind,
    Category,
    CategoryState,
    Family,
    FamilySuggestion,
    SuggestionState,
)
from catalog.selectors import families_with_counts
from core.admin_mixins import plural
from core.models import Alert, DataVersion


def _check_glob(pattern: str) -> str:
    pattern = pattern.strip()
    if "/" not in pattern and "*" not in pattern:
        raise forms.ValidationError(
            "The pattern is a glob on the model id and must contain “/” or “*”, "
            "for example openai/gpt-5.2* or anthropic/claude-*-4.5*.",
            code="not_a_glob",
        )
    return pattern


def _check_globs(aliases) -> list[str]:
    aliases = aliases or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise forms.ValidationError('A list of globs, e.g. ["~anthropic/claude-opus-latest"].', code="not_a_list")
    return [_check_glob(a) for a in aliases]


class FamilyForm(forms.ModelForm):
    class Meta:
        model = Family
        fields = ("slug", "name", "pattern", "aliases", "priority", "vendor")

    def clean_pattern(self) -> str:
        return _check_glob(self.cleaned_data["pattern"])

    def clean_aliases(self) -> list[str]:
        return _check_globs(self.cleaned_data["aliases"])


@admin.register(Family)
class FamilyAdmin(admin.ModelAdmin):
    form = FamilyForm
    list_display = ("slug", "name", "pattern", "priority", "vendor", "model_count", "active_count")
    list_display_links = ("slug", "name")
    search_fields = ("slug", "name", "pattern", "vendor")
    readonly_fields = ("matching_models",)
    fields = ("slug", "name", "pattern", "aliases", "priority", "vendor", "matching_models")

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


class SuggestionStateFilter(admin.SimpleListFilter):
    """Pending suggestions unless asked otherwise: the page is a to-do list."""

    title = "state"
    parameter_name = "state"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*SuggestionState.choices[1:], (self.ALL, "All")]

    def choices(self, changelist):
        value = self.value()
        yield {
            "selected": value is None or value == SuggestionState.PENDING,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Pending",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or SuggestionState.PENDING
        return queryset if value == self.ALL else queryset.filter(state=value)


class FamilySuggestionForm(forms.ModelForm):
    class Meta:
        model = FamilySuggestion
        fields = ("slug", "name", "pattern", "aliases", "priority", "vendor", "state")
        help_texts = {
            "state": "Set to Accepted to create the family as edited here; Rejected is never suggested again."
        }

    def clean_pattern(self) -> str:
        return _check_glob(self.cleaned_data["pattern"])

    def clean_aliases(self) -> list[str]:
        return _check_globs(self.cleaned_data["aliases"])

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("state") == SuggestionState.ACCEPTED
            and Family.objects.filter(slug=cleaned.get("slug")).exists()
        ):
            self.add_error("slug", "A family with this slug exists: choose another before accepting.")
        return cleaned


@admin.register(FamilySuggestion)
class FamilySuggestionAdmin(admin.ModelAdmin):
    form = FamilySuggestionForm
    list_display = ("slug", "name", "pattern", "priority", "model_count", "models_preview", "outcome", "state")
    list_select_related = ("family",)
    list_display_links = ("slug", "name")
    list_filter = (SuggestionStateFilter,)
    search_fields = ("slug", "name", "pattern")
    actions = ("accept_suggestions", "reject_suggestions")
    readonly_fields = ("models_taken", "family", "created_at", "decided_at")

    def has_add_permission(self, request):
        return False  # research and `manage.py family_suggestions` write them

    def get_fields(self, request, obj=None):
        return (*FamilySuggestionForm.Meta.fields, *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.state != SuggestionState.PENDING:
            return self.get_fields(request, obj)  # decided: kept as a record
        return self.readonly_fields

    @admin.display(description="models")
    def model_count(self, obj: FamilySuggestion) -> int:
        return len(obj.model_ids)

    @admin.display(description="models it would take")
    def models_preview(self, obj: FamilySuggestion) -> str:
        ids = obj.model_ids or []
        return ", ".join(ids[:6]) + (f", … ({len(ids) - 6} more)" if len(ids) > 6 else "") if ids else EMPTY

    @admin.display(description="accepting")
    def outcome(self, obj: FamilySuggestion) -> str:
        if obj.state == SuggestionState.PENDING:
            return f"adds its aliases to {obj.family.slug}" if obj.family_id else "creates a family"
        return obj.family.slug if obj.family_id else EMPTY

    @admin.display(description="models it would take")
    def models_taken(self, obj: FamilySuggestion) -> str:
        return ", ".join(obj.model_ids) if obj.model_ids else EMPTY

    def save_model(self, request, obj, form, change):
        wanted = obj.state
        obj.state = SuggestionState.PENDING
        super().save_model(request, obj, form, change)
        if wanted == SuggestionState.ACCEPTED:
            self._accept(request, [obj])
        elif wanted == SuggestionState.REJECTED:
            reject([obj])
            self.message_user(request, f"Rejected {obj.pattern}: it will not be suggested again.", messages.INFO)

    @admin.action(description="Accept the selected suggestions (create their families)")
    def accept_suggestions(self, request, queryset) -> None:
        self._accept(request, list(queryset.order_by("priority", "slug")))

    @admin.action(description="Reject the selected suggestions (never suggested again)")
    def reject_suggestions(self, request, queryset) -> None:
        rejected = reject(list(queryset))
        self.message_user(request, f"Rejected {plural(rejected, 'suggestion')}.", messages.SUCCESS)

    def _accept(self, request, suggestions: list[FamilySuggestion]) -> None:
        try:
            families, moved = accept(suggestions)
        except AcceptError as exc:
            self.message_user(request, f"Nothing accepted: {exc}.", messages.ERROR)
            return
        self.message_user(
            request,
            f"Accepted {plural(len(families), 'suggestion')}: created {', '.join(f.slug for f in families) or 'no family'}; "
            f"{plural(moved, 'model')} changed family.",
            messages.SUCCESS,
        )


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
