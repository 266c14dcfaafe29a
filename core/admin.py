"""Core in the admin: API keys (secret shown once, revoked, never deleted), the alerts every
app raises (read, filtered, acknowledged), who they are sent to and the log of what was sent."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin_mixins import ReadOnlyMixin, plural, pretty_json
from core.auth import api_keys_changed
from core.kinds import alert_kinds
from core.models import Alert, AlertDelivery, AlertSubscription, ApiKey, DeliveryStatus, Scope
from core.tasks import queue_deliveries, send_test


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
                'The secret of API key “{}” is <code style="user-select: all">{}</code> — copy it now: '
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


# --- Alerts ---------------------------------------------------------------------------------------


class OpenListFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open"), ("acknowledged", "Acknowledged"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "model_id",
        "short_message",
        "times",
        "created_at",
        "last_raised_at",
        "acknowledged",
        "acknowledged_by",
    )
    list_select_related = ("acknowledged_by",)
    list_filter = ("kind", OpenListFilter)
    search_fields = ("message", "model_id")
    # Open alerts first (newest first), then the acknowledged ones, the most recently handled first.
    ordering = (F("acknowledged_at").desc(nulls_first=True), "-created_at")
    actions = ("acknowledge",)
    fields = (
        ("kind", "model_id"),
        "message",
        ("times", "created_at", "last_raised_at"),
        ("acknowledged_at", "acknowledged_by"),
        "details_pretty",
    )
    readonly_fields = ("details_pretty",)

    def has_add_permission(self, request):
        return False  # alerts are raised by jobs

    def has_change_permission(self, request, obj=None):
        return False  # the change view is read-only; the action acknowledges

    def has_acknowledge_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="message")
    def short_message(self, obj: Alert) -> str:
        return Truncator(obj.message).chars(120)

    @admin.display(description="acknowledged", boolean=True, ordering="acknowledged_at")
    def acknowledged(self, obj: Alert) -> bool:
        return obj.acknowledged_at is not None

    @admin.display(description="details")
    def details_pretty(self, obj: Alert) -> str:
        return pretty_json(obj.details)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset) -> None:
        changed = queryset.filter(acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        self.message_user(request, f"Acknowledged {plural(changed, 'alert')}.", messages.SUCCESS)


# --- Alert subscriptions and deliveries -----------------------------------------------------------


class AlertSubscriptionForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(
        choices=alert_kinds,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="The alert kinds to send; none ticked means every kind.",
    )

    class Meta:
        model = AlertSubscription
        fields = ("target", "kinds", "format", "secret", "active")

    def clean_kinds(self) -> list[str]:
        return sorted(set(self.cleaned_data["kinds"]))


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(admin.ModelAdmin):
    form = AlertSubscriptionForm
    list_display = ("target", "kind_list", "format", "active", "created_at", "delivered", "failed")
    list_filter = ("active", "format")
    search_fields = ("target",)
    actions = ("send_test_alert",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                delivered_count=Count("deliveries", filter=Q(deliveries__status="delivered")),
                failed_count=Count("deliveries", filter=Q(deliveries__status="failed")),
            )
        )

    @admin.display(description="kinds")
    def kind_list(self, obj: AlertSubscription) -> str:
        return ", ".join(obj.kinds) or "every kind"

    @admin.display(description="delivered", ordering="delivered_count")
    def delivered(self, obj: AlertSubscription) -> int:
        return obj.delivered_count

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, obj: AlertSubscription) -> int:
        return obj.failed_count

    @admin.action(description="Send a test alert to the selected subscriptions", permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset) -> None:
        for subscription in queryset:
            outcome = send_test(subscription)
            if outcome.ok:
                self.message_user(request, f"Test alert sent to {subscription.target}.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"Test alert to {subscription.target} failed: {outcome.error}", messages.ERROR
                )


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "alert_summary",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "short_error",
        "next_attempt_at",
        "delivered_at",
    )
    list_select_related = ("alert", "subscription")
    list_filter = ("status", "subscription")
    date_hierarchy = "created_at"
    actions = ("send_again",)

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("core.change_alertsubscription")

    @admin.action(description="Send the selected deliveries again", permissions=["resend"])
    def send_again(self, request: HttpRequest, queryset) -> None:
        """For a receiver that was down past the last retry, or a delivery that could not be
        queued: each starts again from its first attempt."""
        pks = list(queryset.exclude(status=DeliveryStatus.DELIVERED).values_list("pk", flat=True))
        AlertDelivery.objects.filter(pk__in=pks).update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None)
        transaction.on_commit(lambda: queue_deliveries(pks))
        self.message_user(request, f"Queued {plural(len(pks), 'delivery', 'deliveries')} again.", messages.SUCCESS)

    @admin.display(description="alert")
    def alert_summary(self, obj: AlertDelivery) -> str:
        return Truncator(f"#{obj.alert_id} {obj.alert}").chars(80)

    @admin.display(description="last error")
    def short_error(self, obj: AlertDelivery) -> str:
        return Truncator(obj.last_error).chars(120)
