"""``me``: the caller's profile, a copy of their data, and deleting the account."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from apps.accounts.api.serializers_me import (
    ExportCreatedSerializer,
    ExportRequestSerializer,
    ExportStatusSerializer,
    MeDeleteAcceptedSerializer,
    MeDeleteSerializer,
    MePatchSerializer,
    MeSerializer,
)
from apps.accounts.models import DataExport
from apps.accounts.services import privacy
from apps.accounts.services.profile import user_profile_describe, user_profile_update
from apps.core.api.views import KeelAPIView
from apps.core.http import conditional_get_response, make_etag


def _client_ip(request: Request) -> str | None:
    # DRF's view of the client address honours NUM_PROXIES (X-Forwarded-For).
    return BaseThrottle().get_ident(request) or None


class MeView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    def _me(self, request: Request) -> tuple[dict[str, Any], str]:
        document, etag = user_profile_describe(user=request.user)  # type: ignore[arg-type]
        return MeSerializer(document).data, etag

    @extend_schema(responses={200: MeSerializer, 304: OpenApiResponse(description="Not modified")})
    def get(self, request: Request) -> Response:
        data, etag = self._me(request)
        return conditional_get_response(request, data, etag)

    @extend_schema(
        request=MePatchSerializer,
        responses={200: MeSerializer},
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, required=False)],
    )
    def patch(self, request: Request) -> Response:
        serializer = MePatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_profile_update(
            user=request.user,  # type: ignore[arg-type]
            if_match=request.headers.get("If-Match"),
            **serializer.validated_data,
        )
        request.user.refresh_from_db()
        data, etag = self._me(request)
        return Response(data, headers={"ETag": etag})

    @extend_schema(request=MeDeleteSerializer, responses={202: MeDeleteAcceptedSerializer})
    def delete(self, request: Request) -> Response:
        serializer = MeDeleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        erase_after = privacy.account_delete_request(
            user=request.user,  # type: ignore[arg-type]
            password=serializer.validated_data.get("password") or None,
            session_id=getattr(request.auth, "session_id", None),
            ip=_client_ip(request),
        )
        body = MeDeleteAcceptedSerializer({"status": "deactivated", "erase_after": erase_after}).data
        return Response(body, status=202)


class MeExportView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={202: ExportCreatedSerializer})
    def post(self, request: Request) -> Response:
        ExportRequestSerializer(data=request.data or {}).is_valid(raise_exception=True)
        export = privacy.data_export_request(user=request.user, ip=_client_ip(request))  # type: ignore[arg-type]
        location = reverse("accounts-me-export-detail", kwargs={"export_id": export.id})
        return Response(
            ExportCreatedSerializer({"export_id": str(export.id)}).data,
            status=202,
            headers={"Location": location},
        )


def _export_status(export: DataExport) -> dict[str, Any]:
    download_url = expires_at = None
    if export.status == DataExport.Status.READY:
        token, expires_at = privacy.data_export_download_token(export=export)
        path = reverse("accounts-me-export-download", kwargs={"export_id": export.id})
        download_url = f"{settings.KEEL_PUBLIC_URL}{path}?token={token}"
    return {
        "export_id": str(export.id),
        "status": export.status,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "size": export.size,
        "download_url": download_url,
        "download_url_expires_at": expires_at,
    }


class MeExportDetailView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ExportStatusSerializer, 304: OpenApiResponse(description="Not modified")})
    def get(self, request: Request, export_id: UUID) -> Response:
        export = privacy.data_export_get_for_user(user=request.user, export_id=str(export_id))  # type: ignore[arg-type]
        # The ETag changes every half link lifetime: a 304 never leaves the
        # client with a download link that has less than half its life left.
        half_life = max(1, settings.EXPORT_URL_TTL_SECONDS // 2)
        etag = make_etag("export", export.id, export.status, int(time.time() // half_life))
        return conditional_get_response(request, ExportStatusSerializer(_export_status(export)).data, etag)


class MeExportDownloadView(KeelAPIView):
    """The signed link itself: no bearer token needed (the signature is the credential)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("token", str, OpenApiParameter.QUERY, required=True)],
        responses={(200, "application/json"): OpenApiResponse(description="The export document")},
    )
    def get(self, request: Request, export_id: UUID) -> FileResponse:
        export, document = privacy.data_export_open_for_download(
            export_id=str(export_id), token=request.query_params.get("token", "")
        )
        response = FileResponse(
            document,
            content_type="application/json",
            as_attachment=True,
            filename=f"keel-export-{export.created_at:%Y%m%d}-{str(export.id)[:8]}.json",
        )
        response["Cache-Control"] = "private, no-store"
        return response
