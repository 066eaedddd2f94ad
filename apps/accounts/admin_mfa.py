"""The admin site: staff sign in with their password and then their authenticator.

After the password (with the same lockout and throttles as the API), a staff
member who has TOTP enters a code (or a recovery code) before the session is
signed in. With ``ADMIN_REQUIRE_MFA`` (on in production), one without TOTP
is taken to an enrolment page first, and the admin only answers sessions that
passed the second factor. Until then the browser holds only a short-lived,
server-side "password passed" marker, never a signed-in session.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import login as auth_login
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from rest_framework.throttling import BaseThrottle

ADMIN_MFA_SESSION_KEY = "keel_admin_mfa_user"
PENDING_SESSION_KEY = "keel_admin_pending"
PENDING_TTL_SECONDS = 300
MAX_CODE_ATTEMPTS = 5

logger = structlog.get_logger(__name__)


def _client_ip(request: HttpRequest) -> str | None:
    return BaseThrottle().get_ident(request) or None  # type: ignore[arg-type]


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _pending(request: HttpRequest) -> dict[str, Any] | None:
    """The sign-in that passed its password here, if it is recent."""
    pending = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(pending, dict) or pending.get("at", 0) < time.time() - PENDING_TTL_SECONDS:
        request.session.pop(PENDING_SESSION_KEY, None)
        return None
    return pending


def _pending_user(request: HttpRequest) -> tuple[dict[str, Any], Any] | None:
    from apps.accounts.models import User

    pending = _pending(request)
    if pending is None:
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True, is_staff=True).first()
    if user is None:
        request.session.pop(PENDING_SESSION_KEY, None)
        return None
    return pending, user


def _fail(*, reason: str, user: Any, ip: str | None) -> None:
    from apps.accounts.models import AuditEvent
    from apps.accounts.services.audit import audit_record
    from apps.core.metrics import AUTH_LOGIN_FAILURES

    AUTH_LOGIN_FAILURES.labels(reason=reason).inc()
    kind = AuditEvent.Kind.MFA_FAILED if reason == "mfa" else AuditEvent.Kind.LOGIN_FAILED
    audit_record(kind=kind, target=user, ip=ip, data={"reason": reason, "via": "admin"})
    logger.info("admin_login_failed", reason=reason, user_id=str(user.pk) if user is not None else None)


class _PasswordStep(LoginView):
    """Django's admin login, stopping after the password when a second factor is due."""

    site: KeelAdminSite | None = None
    locked_message = "Too many failed sign-ins. Try again later or reset your password."

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        from apps.core.exceptions import Throttled
        from apps.core.throttling import throttle_hit

        try:
            throttle_hit(scope="auth_login", ident=f"admin-ip:{_client_ip(request)}")
        except Throttled as exc:
            context = self.get_context_data(form=AdminAuthenticationForm(request))
            context["keel_error"] = "Too many attempts. Wait a moment and try again."
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = exc.headers.get("Retry-After", "60")
            return response  # type: ignore[no-any-return]
        return super().post(request, *args, **kwargs)  # type: ignore[no-any-return]

    def form_invalid(self, form: Any) -> HttpResponse:
        from apps.accounts.models import User
        from apps.accounts.services.login import lockout_register_failure

        # A wrong password counts towards the account's lockout, as on the API.
        email = str(form.data.get("username", "")).strip()
        user = User.objects.filter(email__iexact=email, is_active=True).first() if email else None
        if user is not None:
            lockout_register_failure(user=user, ip=_client_ip(self.request))
            _fail(reason="invalid_password", user=user, ip=_client_ip(self.request))
        return super().form_invalid(form)  # type: ignore[no-any-return]

    def form_valid(self, form: Any) -> HttpResponse:
        from apps.accounts.services.login import lockout_clear, lockout_is_locked
        from apps.accounts.services.mfa import mfa_is_enabled

        user = form.get_user()
        if lockout_is_locked(user=user):
            _fail(reason="locked", user=user, ip=_client_ip(self.request))
            form.add_error(None, self.locked_message)
            return super().form_invalid(form)  # type: ignore[no-any-return]
        lockout_clear(user=user)
        has_mfa = mfa_is_enabled(user=user)
        if not has_mfa and not settings.ADMIN_REQUIRE_MFA:
            response = super().form_valid(form)
            _signed_in(self.request, user, mfa=False)
            return response  # type: ignore[no-any-return]
        self.request.session[PENDING_SESSION_KEY] = {
            "user": str(user.pk),
            "backend": user.backend,
            "at": time.time(),
            "next": self.get_success_url(),
            "attempts": 0,
        }
        step = "admin:keel_mfa_verify" if has_mfa else "admin:keel_mfa_setup"
        return HttpResponseRedirect(reverse(step))


def _signed_in(request: HttpRequest, user: Any, *, mfa: bool) -> None:
    from apps.accounts.models import AuditEvent
    from apps.accounts.services.audit import audit_record

    if mfa:
        request.session[ADMIN_MFA_SESSION_KEY] = str(user.pk)
    request.session.pop(PENDING_SESSION_KEY, None)
    audit_record(
        kind=AuditEvent.Kind.LOGIN_SUCCEEDED,
        actor=user,
        target=user,
        ip=_client_ip(request),
        data={"via": "admin", "mfa": mfa},
    )


def _complete(request: HttpRequest, pending: dict[str, Any], user: Any) -> None:
    """The second factor passed: sign the staff member in (a new session key)."""
    auth_login(request, user, backend=pending["backend"])
    _signed_in(request, user, mfa=True)


class KeelAdminSite(admin.AdminSite):
    site_header = "Keel administration"
    site_title = "Keel admin"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        if not settings.ADMIN_REQUIRE_MFA:
            return True
        return request.session.get(ADMIN_MFA_SESSION_KEY) == str(request.user.pk)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        urls: list[URLResolver | URLPattern] = [
            path("login/verify/", self.mfa_verify, name="keel_mfa_verify"),
            path("login/authenticator/", self.mfa_setup, name="keel_mfa_setup"),
        ]
        return urls + super().get_urls()

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.each_context(request), "site_header": self.site_header, **extra}

    @method_decorator(sensitive_post_parameters())
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        context = {
            **self.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        context.update(extra_context or {})
        request.current_app = self.name  # type: ignore[attr-defined]
        view = _PasswordStep.as_view(
            extra_context=context,
            authentication_form=AdminAuthenticationForm,
            template_name="accounts/admin/login.html",
            site=self,
        )
        return view(request)  # type: ignore[no-any-return, return-value]

    @method_decorator(sensitive_post_parameters())
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def mfa_verify(self, request: HttpRequest) -> HttpResponse:
        """Second step: a code from the authenticator app, or a recovery code."""
        from apps.accounts.services.mfa import mfa_code_verify, mfa_is_enabled
        from apps.core.exceptions import Throttled
        from apps.core.throttling import throttle_hit

        found = _pending_user(request)
        if found is None:
            return HttpResponseRedirect(reverse("admin:login"))
        pending, user = found
        if not mfa_is_enabled(user=user):
            return HttpResponseRedirect(reverse("admin:keel_mfa_setup"))
        form = CodeForm(request.POST or None)
        status = 200
        if request.method == "POST" and form.is_valid():
            ip = _client_ip(request)
            try:
                throttle_hit(scope="auth_mfa", ident=f"user:{user.pk}")
            except Throttled:
                form.add_error("code", "Too many attempts. Wait a moment and try again.")
                status = 429
            else:
                if mfa_code_verify(user=user, code=form.cleaned_data["code"], ip=ip):
                    _complete(request, pending, user)
                    return HttpResponseRedirect(pending["next"])
                _fail(reason="mfa", user=user, ip=ip)
                pending["attempts"] = int(pending.get("attempts", 0)) + 1
                if pending["attempts"] >= MAX_CODE_ATTEMPTS:
                    request.session.pop(PENDING_SESSION_KEY, None)
                    return HttpResponseRedirect(reverse("admin:login"))
                request.session[PENDING_SESSION_KEY] = pending
                form.add_error("code", "That code is not right.")
                status = 401
        context = self._context(request, title="Two-step verification", form=form)
        return render(request, "accounts/admin/mfa_verify.html", context, status=status)

    @method_decorator(sensitive_post_parameters())
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def mfa_setup(self, request: HttpRequest) -> HttpResponse:
        """Enrolment for staff without an authenticator, when the admin requires one."""
        from apps.accounts.services.mfa import mfa_is_enabled, totp_setup_begin, totp_setup_confirm
        from apps.core.exceptions import KeelError

        found = _pending_user(request)
        if found is None:
            return HttpResponseRedirect(reverse("admin:login"))
        pending, user = found
        if mfa_is_enabled(user=user):
            return HttpResponseRedirect(reverse("admin:keel_mfa_verify"))
        form = CodeForm(request.POST or None)
        setup = pending.get("setup")
        status = 200
        if request.method == "POST" and setup and form.is_valid():
            try:
                codes = totp_setup_confirm(user=user, code=form.cleaned_data["code"], ip=_client_ip(request))
            except KeelError as exc:
                if exc.code != "invalid_code":
                    raise
                form.add_error("code", "That code is not right. Check the time on your phone and try again.")
                status = 401
            else:
                _complete(request, pending, user)
                context = self._context(
                    request, title="Recovery codes", recovery_codes=codes, next_url=pending["next"]
                )
                return render(request, "accounts/admin/mfa_recovery.html", context)
        if request.method == "GET" or not setup:
            begun = totp_setup_begin(user=user)
            setup = {"secret": begun.secret, "otpauth_url": begun.otpauth_url}
            pending["setup"] = setup
            request.session[PENDING_SESSION_KEY] = pending
            form = CodeForm()
        context = self._context(request, title="Set up two-step verification", form=form, setup=setup)
        return render(request, "accounts/admin/mfa_setup.html", context, status=status)
