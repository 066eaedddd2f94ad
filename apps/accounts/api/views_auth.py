"""``/api/v1/auth/``: registration, sign-in, MFA, step-up, tokens, sessions, passwords.

Views only parse, call one service and render. The public endpoints do not
authenticate at all (``authentication_classes = ()``): a stale bearer token
sent along with a refresh or a login must not turn it into a 401.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from apps.accounts.api import serializers_auth as s
from apps.accounts.models import DeviceChallenge, Session
from apps.accounts.selectors import device_challenge_list_pending_for_user, session_list_for_user
from apps.accounts.services import challenges, login, mfa, passwords, registration, sessions
from apps.core.api.views import KeelAPIView, KeelGenericAPIView
from apps.core.throttling import AnonRateThrottle, IPScopedThrottle, UserRateThrottle

_THROTTLES = (AnonRateThrottle, UserRateThrottle, IPScopedThrottle)


def client_ip(request: Request) -> str | None:
    """The client's address as the throttles see it (``NUM_PROXIES`` aware), if it is one."""
    ident = BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address(ident.strip()))
    except (ValueError, AttributeError):
        return None


def user_agent(request: Request) -> str | None:
    return request.META.get("HTTP_USER_AGENT")


def _parse(serializer_class: type[s.StrictSerializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _current_session_id(request: Request) -> str | None:
    return getattr(request.auth, "session_id", None)


class PublicAuthView(KeelAPIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = _THROTTLES


class SignedInView(KeelAPIView):
    permission_classes = (IsAuthenticated,)
    throttle_classes = _THROTTLES


class RegisterView(PublicAuthView):
    throttle_scope = "auth_register"

    @extend_schema(
        operation_id="auth_register",
        request=s.RegisterInputSerializer,
        responses={201: s.SignedInSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.RegisterInputSerializer, request)
        tokens = registration.user_register(
            email=data["email"],
            password=data["password"],
            display_name=data["display_name"],
            device=data["device"],
            ip=client_ip(request),
            user_agent=user_agent(request),
            locale=data["locale"] or request.headers.get("Accept-Language"),
        )
        return Response(s.token_pair_data(tokens, with_user=True), status=status.HTTP_201_CREATED)


class EmailVerifyView(PublicAuthView):
    @extend_schema(
        operation_id="auth_email_verify",
        request=s.EmailVerifyInputSerializer,
        responses={200: s.EmailVerifiedSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.EmailVerifyInputSerializer, request)
        user = registration.email_verify(token=data["token"], ip=client_ip(request))
        return Response({"user": s.AuthUserSerializer(user).data})


class EmailVerifyResendView(SignedInView):
    throttle_scope = "auth_register"

    @extend_schema(operation_id="auth_email_verify_resend", request=None, responses={202: None})
    def post(self, request: Request) -> Response:
        _parse(s.EmptyInputSerializer, request)
        registration.email_verification_resend(user=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_202_ACCEPTED)


class LoginView(PublicAuthView):
    throttle_scope = "auth_login"

    @extend_schema(
        operation_id="auth_login",
        request=s.LoginInputSerializer,
        responses={
            200: s.SignedInSerializer,
            401: OpenApiResponse(description="invalid_credentials"),
            403: OpenApiResponse(description="mfa_required (mfa_token) or device_verification_required"),
            423: OpenApiResponse(description="account_locked"),
            429: OpenApiResponse(description="throttled"),
        },
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.LoginInputSerializer, request)
        tokens = login.login_with_password(
            email=data["email"],
            password=data["password"],
            device=data["device"],
            otp=data["otp"] or None,
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
        return Response(s.token_pair_data(tokens, with_user=True))


class LoginMfaView(PublicAuthView):
    throttle_scope = "auth_mfa"

    @extend_schema(
        operation_id="auth_login_mfa",
        request=s.LoginMfaInputSerializer,
        responses={200: s.SignedInSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.LoginMfaInputSerializer, request)
        tokens = mfa.mfa_login_complete(
            mfa_token=data["mfa_token"],
            code=data["code"],
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
        return Response(s.token_pair_data(tokens, with_user=True))


class DeviceChallengeListView(KeelGenericAPIView):
    """The account's sign-ins waiting for approval (what a trusted device shows)."""

    permission_classes = (IsAuthenticated,)
    throttle_classes = _THROTTLES
    serializer_class = s.ChallengeSerializer
    queryset = DeviceChallenge.objects.none()  # for the schema; reads go through the selector

    @extend_schema(operation_id="auth_device_challenges_list", responses=s.ChallengeSerializer(many=True))
    def get(self, request: Request) -> Response:
        queryset = device_challenge_list_pending_for_user(user=request.user)  # type: ignore[arg-type]
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class DeviceChallengeVerifyView(PublicAuthView):
    throttle_scope = "auth_challenge"

    @extend_schema(
        operation_id="auth_device_challenge_verify",
        request=s.ChallengeVerifyInputSerializer,
        responses={200: s.SignedInSerializer},
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        data = _parse(s.ChallengeVerifyInputSerializer, request)
        tokens = challenges.device_challenge_verify(
            challenge_id=challenge_id,
            code=data["code"],
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
        return Response(s.token_pair_data(tokens, with_user=True))


class DeviceChallengeApproveView(SignedInView):
    @extend_schema(operation_id="auth_device_challenge_approve", request=None, responses={204: None})
    def post(self, request: Request, challenge_id: str) -> Response:
        _parse(s.EmptyInputSerializer, request)
        challenges.device_challenge_approve(
            challenge_id=challenge_id,
            user=request.user,  # type: ignore[arg-type]
            session_id=_current_session_id(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceChallengePollView(PublicAuthView):
    @extend_schema(
        operation_id="auth_device_challenge_poll",
        request=None,
        responses={200: s.SignedInSerializer, 202: s.ChallengePendingSerializer},
    )
    def post(self, request: Request, challenge_id: str) -> Response:
        _parse(s.EmptyInputSerializer, request)
        tokens = challenges.device_challenge_poll(
            challenge_id=challenge_id, ip=client_ip(request), user_agent=user_agent(request)
        )
        if tokens is None:
            return Response({"status": "pending"}, status=status.HTTP_202_ACCEPTED)
        return Response(s.token_pair_data(tokens, with_user=True))


class TokenRefreshView(PublicAuthView):
    @extend_schema(
        operation_id="auth_token_refresh",
        request=s.RefreshInputSerializer,
        responses={200: s.TokenPairSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.RefreshInputSerializer, request)
        tokens = sessions.tokens_refresh(refresh=data["refresh"], ip=client_ip(request))
        return Response(s.token_pair_data(tokens, with_user=False))


class LogoutView(PublicAuthView):
    @extend_schema(operation_id="auth_logout", request=s.RefreshInputSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        data = _parse(s.RefreshInputSerializer, request)
        sessions.session_logout(refresh=data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(KeelGenericAPIView):
    permission_classes = (IsAuthenticated,)
    throttle_classes = _THROTTLES
    serializer_class = s.SessionSerializer
    queryset = Session.objects.none()  # for the schema; reads go through the selector

    @extend_schema(operation_id="auth_sessions_list", responses=s.SessionSerializer(many=True))
    def get(self, request: Request) -> Response:
        queryset = session_list_for_user(
            user=request.user,  # type: ignore[arg-type]
            current_session_id=_current_session_id(request),
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class SessionDetailView(SignedInView):
    @extend_schema(operation_id="auth_session_revoke", responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        sessions.session_revoke_for_user(user=request.user, session_id=session_id)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(PublicAuthView):
    throttle_scope = "auth_password_reset"

    @extend_schema(
        operation_id="auth_password_reset", request=s.PasswordResetInputSerializer, responses={202: None}
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.PasswordResetInputSerializer, request)
        passwords.password_reset_request(email=data["email"], ip=client_ip(request))
        return Response(status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(PublicAuthView):
    throttle_scope = "auth_password_reset"

    @extend_schema(
        operation_id="auth_password_reset_confirm",
        request=s.PasswordResetConfirmInputSerializer,
        responses={204: None},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.PasswordResetConfirmInputSerializer, request)
        passwords.password_reset_confirm(
            token=data["token"], password=data["password"], ip=client_ip(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeView(SignedInView):
    @extend_schema(
        operation_id="auth_password_change", request=s.PasswordChangeInputSerializer, responses={204: None}
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.PasswordChangeInputSerializer, request)
        passwords.password_change(
            user=request.user,  # type: ignore[arg-type]
            old_password=data["old_password"],
            new_password=data["new_password"],
            current_session_id=_current_session_id(request),
            ip=client_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpView(SignedInView):
    throttle_scope = "auth_mfa"

    @extend_schema(operation_id="auth_mfa_totp_setup", request=None, responses={201: s.TotpSetupSerializer})
    def post(self, request: Request) -> Response:
        _parse(s.EmptyInputSerializer, request)
        setup = mfa.totp_setup_begin(user=request.user)  # type: ignore[arg-type]
        return Response(
            s.TotpSetupSerializer({"secret": setup.secret, "otpauth_url": setup.otpauth_url}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        operation_id="auth_mfa_totp_disable", request=s.TotpDisableInputSerializer, responses={204: None}
    )
    def delete(self, request: Request) -> Response:
        data = _parse(s.TotpDisableInputSerializer, request)
        mfa.totp_disable(
            user=request.user,  # type: ignore[arg-type]
            code=data.get("code") or None,
            password=data.get("password") or None,
            ip=client_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpConfirmView(SignedInView):
    throttle_scope = "auth_mfa"

    @extend_schema(
        operation_id="auth_mfa_totp_confirm",
        request=s.TotpConfirmInputSerializer,
        responses={200: s.RecoveryCodesSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _parse(s.TotpConfirmInputSerializer, request)
        codes = mfa.totp_setup_confirm(
            user=request.user,  # type: ignore[arg-type]
            code=data["code"],
            ip=client_ip(request),
        )
        return Response({"recovery_codes": codes})
