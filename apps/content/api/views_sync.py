"""Offline sync API (contract section 3): thin views over the sync selector and service."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.content.api.serializers_sync import (
    SyncChangesSerializer,
    SyncPushRequestSchemaSerializer,
    SyncPushResponseSerializer,
    SyncPushSerializer,
)
from apps.content.selectors.acl import principals_for_user
from apps.content.selectors.sync import sync_changes_page, sync_collections_parse, sync_limit_parse
from apps.content.services.sync import sync_push
from apps.core.api.views import KeelAPIView
from apps.core.exceptions import PayloadTooLarge


class SyncChangesView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="sync_changes",
        tags=["sync"],
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.STR, description="The previous answer's cursor; none: snapshot."
            ),
            OpenApiParameter(
                "collections", OpenApiTypes.STR, description="Comma-separated collection names."
            ),
            OpenApiParameter(
                "limit", OpenApiTypes.INT, description="Changes per page, 1 to 1000 (default 500)."
            ),
        ],
        responses={
            200: SyncChangesSerializer,
            400: OpenApiResponse(description="invalid_cursor; validation_error (limit, collections)"),
        },
        description=(
            "Every upsert and delete of a document the caller may read since the cursor, including "
            "documents that became unreadable (as delete). Without a cursor: a full snapshot, paged, "
            "whose last cursor continues from the snapshot's point."
        ),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        limit = sync_limit_parse(params.get("limit"))
        collections = sync_collections_parse(params.get("collections"))
        page = sync_changes_page(
            user=request.user,
            principals=principals_for_user(user=request.user),
            since=params.get("since") or None,
            collections=collections,
            limit=limit,
        )
        body = {"changes": page.changes, "cursor": page.cursor, "has_more": page.has_more, "seq": page.seq}
        return Response(body, headers={"Cache-Control": "private, no-store"})


class SyncPushView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="sync_push",
        tags=["sync"],
        request=SyncPushRequestSchemaSerializer,
        responses={
            200: SyncPushResponseSerializer,
            400: OpenApiResponse(description="validation_error (too many mutations); invalid_cursor"),
            413: OpenApiResponse(description="payload_too_large"),
        },
        description=(
            "Offline mutations, applied in order, each in its own transaction and idempotent on "
            "mutation_id. Each result is applied, merged, conflict or rejected (with a code)."
        ),
    )
    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.SYNC_PUSH_MAX_BYTES
        if length > limit:
            raise PayloadTooLarge(f"A push may carry at most {limit} bytes; split it.")
        serializer = SyncPushSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = sync_push(
            user=request.user,
            mutations=serializer.validated_data["mutations"],
            since=serializer.validated_data.get("since") or None,
        )
        return Response({"results": outcome.results, "cursor": outcome.cursor, "seq": outcome.seq})
