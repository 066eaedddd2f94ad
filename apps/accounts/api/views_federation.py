"""Social sign-in, the OAuth 2.1 hosted login page and token endpoint, OIDC metadata.

``GET/POST auth/authorize`` is an HTML page (a phone's in-app browser shows
it), protected by Django's CSRF check and a server-side flow kept in the
Django session; every other view answers JSON.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException, Throttled
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api import serializers_federation as s
from apps.accounts.api.serializers_auth import token_pair_data
from apps.accounts.api.views_auth import PublicAuthView, client_ip, user_agent
from apps.accounts.services import oauth, social
from apps.accounts.services.sessions import IssuedTokens
from apps.core.api.views import KeelAPIView
from apps.core.exceptions import KeelError
from apps.core.parsers import ORJSONParser
from apps.core.throttling import AnonRateThrottle, IPScopedThrottle

logger = structlog.get_logger(__name__)

# --- Social sign-in -----------------------------------------------------------


class SocialLoginView(PublicAuthView):
    throttle_scope = "auth_login"

    @extend_schema(
        operation_id="auth_social_login",
        request=s.SocialLoginInputSerializer,
        responses={
            200: s.SocialSignedInSerializer,
            401: OpenApiResponse(description="invalid_token (any problem with the ID token)"),
            403: OpenApiResponse(description="mfa_required (mfa_token): the account has MFA switched on"),
            404: OpenApiResponse(description="not_found: provider other than google or apple"),
            503: OpenApiResponse(
                description="provider_unavailable: the provider's keys could not be fetched"
            ),
        },
    )
    def post(self, request: Request, provider: str) -> Response:
        social.social_provider_get(provider=provider)
        serializer = s.SocialLoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = social.social_login(
            provider=provider,
            id_token=data["id_token"],
            nonce=data["nonce"],
            device=data["device"],
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
        body = token_pair_data(result.tokens, with_user=True)
        return Response({**body, "created": result.created})


# --- The hosted login page ----------------------------------------------------

FLOWS_SESSION_KEY = "keel_oauth_flows"
DEVICE_COOKIE = "keel_device"
_MAX_FLOWS = 5
_ACTION_SCOPES = {
    "password": "auth_login",
    "mfa": "auth_mfa",
    "challenge": "auth_challenge",
    "poll": "auth_challenge",
}
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self' {targets}"
)


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    check = _CsrfCheck(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {})  # type: ignore[arg-type, return-value]


_NEVER_REDIRECT_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob", "about"})


class _Redirect(HttpResponseRedirect):
    """A redirect to a registered redirect URI, which may use the app's own scheme."""

    def __init__(self, location: str) -> None:
        scheme = location.split(":", 1)[0].lower()
        # Registration already refuses these; a row written around the admin must not run script.
        self.allowed_schemes = ["https", "http"] + ([scheme] if scheme not in _NEVER_REDIRECT_SCHEMES else [])
        super().__init__(location)


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200, redirect_uri: str = ""
) -> HttpResponse:
    response = render(request, f"accounts/hosted/{template}", context, status=status)
    response["Content-Security-Policy"] = _CSP.format(targets=_csp_source(redirect_uri)).strip()
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _csp_source(redirect_uri: str) -> str:
    """The app's redirect target as a CSP source: browsers apply form-action to the redirect after a post."""
    parts = urlsplit(redirect_uri)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:" if parts.scheme else ""


def _error_page(request: HttpRequest, message: str, *, status: int = 400) -> HttpResponse:
    return _page(request, "error.html", {"error": message}, status=status)


def _flows(request: HttpRequest) -> dict[str, dict[str, Any]]:
    flows: dict[str, dict[str, Any]] = request.session.get(FLOWS_SESSION_KEY, {})
    now = time.time()
    return {
        flow_id: flow
        for flow_id, flow in flows.items()
        if flow.get("created", 0) > now - settings.OAUTH_HOSTED_FLOW_TTL_SECONDS
    }


def _flows_save(request: HttpRequest, flows: dict[str, dict[str, Any]]) -> None:
    if len(flows) > _MAX_FLOWS:
        newest = sorted(flows.items(), key=lambda item: item[1]["created"])[-_MAX_FLOWS:]
        flows = dict(newest)
    request.session[FLOWS_SESSION_KEY] = flows
    request.session.modified = True


def _device_for(request: HttpRequest, params: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The device of this sign-in, and a new browser device id to remember (if one was made).

    An app passes its install's ``device_id`` (with ``device_name`` and
    ``platform``) as extra authorization parameters; otherwise the browser is
    the device, remembered in a long-lived cookie.
    """
    platform = params.get("platform", "")
    platform = platform if platform in ("ios", "android", "web") else "web"
    device_id = params.get("device_id", "").strip()[:128]
    if device_id:
        name = params.get("device_name", "").strip()[:128]
        return {"device_id": device_id, "name": name, "platform": platform}, None
    cookie = request.COOKIES.get(DEVICE_COOKIE, "")
    new_cookie = None
    if not (16 <= len(cookie) <= 64 and cookie.replace("-", "").replace("_", "").isalnum()):
        cookie = new_cookie = secrets.token_urlsafe(24)
    return {"device_id": f"browser:{cookie}", "name": "Web browser", "platform": "web"}, new_cookie


def _single_params(request: Request) -> dict[str, str] | None:
    """The query as a dict; ``None`` when a parameter is repeated (never accepted)."""
    params: dict[str, str] = {}
    for key, values in request.query_params.lists():
        if len(values) != 1:
            return None
        params[key] = values[0]
    return params


class HostedAuthorizeView(KeelAPIView):
    """``GET auth/authorize``: the hosted login page of the OAuth 2.1 code flow (PKCE S256)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (AnonRateThrottle, IPScopedThrottle)
    parser_classes = (FormParser, MultiPartParser)

    def get_throttles(self) -> list[Any]:
        action = self.request.POST.get("action", "") if self.request.method == "POST" else ""
        self.throttle_scope = _ACTION_SCOPES.get(action, "")
        return super().get_throttles()

    def handle_exception(self, exc: Exception) -> HttpResponse:  # type: ignore[override]
        # This is a page in a browser: errors are pages too, not problem documents.
        if isinstance(exc, Throttled):
            response = _error_page(
                self.request._request, "Too many attempts. Wait a moment and try again.", status=429
            )
            wait = getattr(exc, "wait", None)
            if wait:
                response["Retry-After"] = str(max(1, int(wait)))
            return response
        if isinstance(exc, APIException):
            return _error_page(
                self.request._request, "The sign-in request is not valid.", status=exc.status_code
            )
        logger.error("hosted_login_failed", exc_info=exc)
        return _error_page(self.request._request, "Something went wrong on our side.", status=500)

    @extend_schema(
        operation_id="auth_authorize",
        description=(
            "OAuth 2.1 authorization request (response_type=code, client_id, redirect_uri, code_challenge, "
            "code_challenge_method=S256, state; optional device_id, device_name, platform of the app "
            "install). Answers the hosted login page (HTML), then redirects to "
            "redirect_uri?code=...&state=..."
        ),
        responses={200: OpenApiResponse(description="The hosted login page (text/html)")},
    )
    def get(self, request: Request) -> HttpResponse:
        django_request = request._request
        params = _single_params(request)
        if params is None:
            return _error_page(django_request, "A parameter of the sign-in request is repeated.")
        try:
            authorization = oauth.oauth_authorization_validate(params=params)
        except oauth.OAuthFatalError as exc:
            return _error_page(django_request, f"This sign-in request cannot be used: {exc.description}")
        except oauth.OAuthRedirectError as exc:
            return _Redirect(exc.location)
        device, new_cookie = _device_for(django_request, params)
        flows = _flows(django_request)
        flow_id = secrets.token_urlsafe(18)
        flows[flow_id] = {
            "params": params,
            "device": device,
            "created": time.time(),
            "step": "password",
            # OpenID Connect's login_hint pre-fills the address the app already knows.
            "email": params.get("login_hint", "")[:254] if "@" in params.get("login_hint", "") else "",
        }
        _flows_save(django_request, flows)
        response = self._render_step(django_request, flow_id, flows[flow_id], authorization)
        if new_cookie:
            response.set_cookie(
                DEVICE_COOKIE,
                new_cookie,
                max_age=2 * 365 * 24 * 3600,
                secure=django_request.is_secure(),
                httponly=True,
                samesite="Lax",
            )
        return response

    @extend_schema(exclude=True)
    def post(self, request: Request) -> HttpResponse:
        django_request = request._request
        reason = _csrf_failure(django_request)
        if reason is not None:
            return _error_page(
                django_request, "This sign-in page has expired or was not opened from Keel.", status=403
            )
        flows = _flows(django_request)
        flow_id = str(request.data.get("flow", ""))
        flow = flows.get(flow_id)
        if flow is None:
            return _error_page(django_request, "This sign-in has expired.")
        try:
            authorization = oauth.oauth_authorization_validate(params=flow["params"])
        except oauth.OAuthFatalError as exc:
            return _error_page(django_request, f"This sign-in request cannot be used: {exc.description}")
        except oauth.OAuthRedirectError as exc:
            return _Redirect(exc.location)
        action = str(request.data.get("action", ""))
        if action == "cancel":
            flows.pop(flow_id, None)
            _flows_save(django_request, flows)
            return _Redirect(oauth.oauth_authorization_deny(request=authorization))
        try:
            tokens = self._advance(request, flow, action)
        except KeelError as exc:
            response = self._on_error(django_request, flow_id, flow, authorization, exc)
            _flows_save(django_request, {**flows, flow_id: flow})
            return response
        if tokens is None:
            return self._render_step(
                django_request,
                flow_id,
                flow,
                authorization,
                notice="Not approved yet. Approve the sign-in on your other device, then try again.",
                status=202,
            )
        flows.pop(flow_id, None)
        _flows_save(django_request, flows)
        user = tokens.user
        if user is None:  # every service that opens a session names its user
            return _error_page(django_request, "The sign-in could not be completed.", status=500)
        try:
            location = oauth.oauth_authorization_complete(
                request=authorization, user=user, tokens=tokens, ip=client_ip(request)
            )
        except oauth.OAuthFatalError as exc:
            return _error_page(django_request, f"This sign-in request cannot be used: {exc.description}")
        return _Redirect(location)

    def _advance(self, request: Request, flow: dict[str, Any], action: str) -> IssuedTokens | None:
        """Run the step the form posted; raises the services' errors (handled by ``_on_error``)."""
        from apps.accounts.services import challenges, mfa

        ip, agent = client_ip(request), user_agent(request)
        step = flow["step"]
        email = str(request.data.get("email", "")).strip()[:254]
        password = str(request.data.get("password", ""))[:256]
        code = str(request.data.get("code", "")).strip()[:32]
        if step == "password" and action == "password":
            flow["email"] = email
            if not email or not password:
                raise _FormError("Enter your email address and password.")
            return oauth.oauth_password_sign_in(
                email=email, password=password, device=flow["device"], ip=ip, user_agent=agent
            )
        if step == "mfa" and action == "mfa":
            if not code:
                raise _FormError("Enter the code from your authenticator app.")
            return mfa.mfa_login_complete(mfa_token=flow["mfa_token"], code=code, ip=ip, user_agent=agent)
        if step == "challenge" and action == "challenge":
            if not code:
                raise _FormError("Enter the code we sent to your email address.")
            return challenges.device_challenge_verify(
                challenge_id=flow["challenge_id"], code=code, ip=ip, user_agent=agent
            )
        if step == "challenge" and action == "poll":
            return challenges.device_challenge_poll(
                challenge_id=flow["challenge_id"], ip=ip, user_agent=agent
            )
        raise _FormError("Please use the form below.")

    def _on_error(
        self,
        request: HttpRequest,
        flow_id: str,
        flow: dict[str, Any],
        authorization: oauth.AuthorizationRequest,
        exc: KeelError,
    ) -> HttpResponse:
        """Turn a service's answer into the next page (and update the flow in place)."""
        code = exc.code
        if code == "mfa_required":
            flow.update(step="mfa", mfa_token=exc.extra["mfa_token"])
            return self._render_step(request, flow_id, flow, authorization)
        if code == "device_verification_required":
            flow.update(step="challenge", challenge_id=exc.extra["challenge_id"])
            flow.pop("mfa_token", None)
            return self._render_step(request, flow_id, flow, authorization)
        restart = code in ("challenge_expired", "not_found") or (
            code == "invalid_token" and flow["step"] == "mfa"
        )
        if restart:
            for key in ("mfa_token", "challenge_id"):
                flow.pop(key, None)
            flow["step"] = "password"
            return self._render_step(
                request,
                flow_id,
                flow,
                authorization,
                error="That verification has expired. Sign in again.",
                status=exc.status_code,
            )
        messages = {
            "invalid_credentials": "The email address or password is wrong.",
            "account_locked": "Too many failed sign-ins. Try again later or reset your password.",
            "invalid_code": "That code is not right. Try again.",
            "throttled": "Too many attempts. Wait a moment and try again.",
            "form": exc.detail,
        }
        response = self._render_step(
            request,
            flow_id,
            flow,
            authorization,
            error=messages.get(code, exc.detail),
            status=exc.status_code,
        )
        if "Retry-After" in exc.headers:
            response["Retry-After"] = exc.headers["Retry-After"]
        return response

    def _render_step(
        self,
        request: HttpRequest,
        flow_id: str,
        flow: dict[str, Any],
        authorization: oauth.AuthorizationRequest,
        *,
        error: str = "",
        notice: str = "",
        status: int = 200,
    ) -> HttpResponse:
        template = {"password": "login.html", "mfa": "mfa.html", "challenge": "challenge.html"}[flow["step"]]
        context = {
            "flow": flow_id,
            "client_name": authorization.client_name,
            "email": flow.get("email", ""),
            "error": error,
            "notice": notice,
            "form_action": request.path,
        }
        return _page(request, template, context, status=status, redirect_uri=authorization.redirect_uri)


class _FormError(KeelError):
    status_code = 400
    code = "form"
    title = "Incomplete form"


# --- The token endpoint -------------------------------------------------------


class OAuthTokenView(KeelAPIView):
    """``POST auth/token``: RFC 6749 answers (the contract's one exception to problem+json)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    parser_classes = (FormParser, ORJSONParser)

    def handle_exception(self, exc: Exception) -> HttpResponse:  # type: ignore[override]
        if isinstance(exc, Throttled):
            response = self._oauth_error(429, "invalid_request", "Too many requests; slow down.")
            wait = getattr(exc, "wait", None)
            if wait:
                response["Retry-After"] = str(max(1, int(wait)))
            return response
        if isinstance(exc, APIException):
            return self._oauth_error(400, "invalid_request", "The request body is not valid.")
        logger.error("oauth_token_failed", exc_info=exc)
        return self._oauth_error(500, "server_error", "Something went wrong on our side.")

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> JsonResponse:
        response = JsonResponse({"error": error, "error_description": description}, status=status)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response

    @extend_schema(
        operation_id="auth_token",
        request=s.OAuthTokenInputSerializer,
        responses={
            200: s.OAuthTokenSerializer,
            400: OpenApiResponse(s.OAuthErrorSerializer, description="RFC 6749 error (invalid_grant, ...)"),
            401: OpenApiResponse(s.OAuthErrorSerializer, description="invalid_client"),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        serializer = s.OAuthTokenInputSerializer(data=request.data)
        if not serializer.is_valid():
            fields = ", ".join(sorted(serializer.errors))
            return self._oauth_error(400, "invalid_request", f"Invalid or repeated parameters: {fields}.")
        body = {key: value for key, value in serializer.validated_data.items() if value is not None}
        answer = oauth.oauth_token_response(
            body=body, authorization=request.headers.get("Authorization"), ip=client_ip(request)
        )
        response = JsonResponse(answer.body, status=answer.status)
        for name, value in answer.headers.items():
            if name.lower() != "content-type":
                response[name] = value
        return response


# --- OpenID Connect metadata (outside /api/v1) --------------------------------


def openid_configuration(request: HttpRequest) -> JsonResponse:
    """``/.well-known/openid-configuration``: lets AppAuth configure itself from the issuer."""
    response = JsonResponse(oauth.oidc_discovery())
    response["Cache-Control"] = "public, max-age=3600"
    return response


def jwks(request: HttpRequest) -> JsonResponse:
    """``/.well-known/jwks.json``: the public keys of Keel's ID tokens."""
    response = JsonResponse(oauth.oidc_jwks())
    response["Cache-Control"] = "public, max-age=3600"
    return response
