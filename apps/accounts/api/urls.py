from django.urls import URLPattern

from apps.accounts.api import views_auth, views_federation, views_me
from apps.core.api.paths import api_path

urlpatterns: list[URLPattern] = [
    *api_path("me", views_me.MeView.as_view(), name="accounts-me"),
    *api_path("me/export", views_me.MeExportView.as_view(), name="accounts-me-export"),
    *api_path(
        "me/export/<uuid:export_id>", views_me.MeExportDetailView.as_view(), name="accounts-me-export-detail"
    ),
    *api_path(
        "me/export/<uuid:export_id>/download",
        views_me.MeExportDownloadView.as_view(),
        name="accounts-me-export-download",
    ),
    # Sessions, sign-in, MFA, step-up, passwords (views_auth).
    *api_path("auth/register", views_auth.RegisterView.as_view(), name="auth-register"),
    *api_path("auth/email/verify", views_auth.EmailVerifyView.as_view(), name="auth-email-verify"),
    *api_path(
        "auth/email/verify/resend",
        views_auth.EmailVerifyResendView.as_view(),
        name="auth-email-verify-resend",
    ),
    *api_path("auth/login", views_auth.LoginView.as_view(), name="auth-login"),
    *api_path("auth/login/mfa", views_auth.LoginMfaView.as_view(), name="auth-login-mfa"),
    *api_path(
        "auth/device-challenges", views_auth.DeviceChallengeListView.as_view(), name="auth-device-challenges"
    ),
    *api_path(
        "auth/device-challenges/<str:challenge_id>/verify",
        views_auth.DeviceChallengeVerifyView.as_view(),
        name="auth-device-challenge-verify",
    ),
    *api_path(
        "auth/device-challenges/<str:challenge_id>/approve",
        views_auth.DeviceChallengeApproveView.as_view(),
        name="auth-device-challenge-approve",
    ),
    *api_path(
        "auth/device-challenges/<str:challenge_id>/poll",
        views_auth.DeviceChallengePollView.as_view(),
        name="auth-device-challenge-poll",
    ),
    *api_path("auth/token/refresh", views_auth.TokenRefreshView.as_view(), name="auth-token-refresh"),
    *api_path("auth/logout", views_auth.LogoutView.as_view(), name="auth-logout"),
    *api_path("auth/sessions", views_auth.SessionListView.as_view(), name="auth-sessions"),
    *api_path(
        "auth/sessions/<str:session_id>", views_auth.SessionDetailView.as_view(), name="auth-session-detail"
    ),
    *api_path("auth/password/reset", views_auth.PasswordResetView.as_view(), name="auth-password-reset"),
    *api_path(
        "auth/password/reset/confirm",
        views_auth.PasswordResetConfirmView.as_view(),
        name="auth-password-reset-confirm",
    ),
    *api_path("auth/password/change", views_auth.PasswordChangeView.as_view(), name="auth-password-change"),
    *api_path("auth/mfa/totp", views_auth.TotpView.as_view(), name="auth-mfa-totp"),
    *api_path("auth/mfa/totp/confirm", views_auth.TotpConfirmView.as_view(), name="auth-mfa-totp-confirm"),
    # Social sign-in, OAuth 2.1 hosted login and token endpoint (views_federation).
    *api_path(
        "auth/social/<str:provider>", views_federation.SocialLoginView.as_view(), name="auth-social-login"
    ),
    *api_path("auth/authorize", views_federation.HostedAuthorizeView.as_view(), name="auth-authorize"),
    *api_path("auth/token", views_federation.OAuthTokenView.as_view(), name="auth-token"),
]
