"""API keys in the admin: issued with their secret shown once, revoked, never deleted."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from llmhive_site.auth import api_keys_changed
from routing.models import ApiKey, Scope


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes")

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data["scopes"]))


class RevokedListFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("live", "Live"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scope_list", "created_at", "created_by", "last_used_at", "revoked")
    list_select_related = ("created_by",)
    list_filter = (RevokedListFilter,)
    search_fields = ("name", "prefix")
    actions = ("revoke_keys",)
    details = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes")
        if obj.is_revoked:
            return ("name", "scope_list", *self.details)
        return ("name", "scopes", *self.details)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else (*self.details, "scope_list")

    def has_change_permission(self, request, obj=None):
        # A revoked key is a record: it is shown, nothing on it changes any more.
        if obj is not None and obj.is_revoked:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # revoked keys stay, so the record of who could call the API stays too

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def revoked(self, obj: ApiKey) -> bool:
        return obj.is_revoked

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw_key = ApiKey.issue(
            name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"], created_by=request.user
        )
        # The admin goes on with `obj` (the log entry, the redirect): make it the issued key.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        obj._state.db = key._state.db
        # The secret exists only here: it is not stored, so this message is the one time it is shown.
        self.message_user(
            request,
            format_html(
                "The secret of API key “{}” is <code style=\"user-select: all\">{}</code> — copy it now: "
                "it is not stored and will not be shown again.",
                key.name,
                raw_key,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        api_keys_changed()  # update() sends no save signal: every worker's key cache must drop them
        self.message_user(request, f"Revoked {revoked} API key{'' if revoked == 1 else 's'}.", messages.SUCCESS)
