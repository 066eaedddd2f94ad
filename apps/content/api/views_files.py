"""The files API: create with a signed upload, upload, complete, get, delete, download."""

from __future__ import annotations

import re
import time
from typing import Any

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.content.api.serializers_files import (
    FileCreateRequestSerializer,
    FileCreateResponseSerializer,
    FileSerializer,
)
from apps.content.selectors.files import (
    file_describe,
    file_download_resolve,
    file_etag,
    file_get_for_user,
    file_storage,
)
from apps.content.services.files import (
    file_complete,
    file_create,
    file_delete,
    file_upload_receive,
)
from apps.core.api.views import KeelAPIView
from apps.core.http import conditional_get_response

_SIGNED_QUERY = [
    OpenApiParameter("expires", str, OpenApiParameter.QUERY, required=True),
    OpenApiParameter("signature", str, OpenApiParameter.QUERY, required=True),
]


class FileCollectionView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="files_create",
        tags=["files"],
        request=FileCreateRequestSerializer,
        responses={201: FileCreateResponseSerializer},
        description=(
            "Register a file and get a signed, time-limited upload. Then send the bytes as "
            "`upload` says (PUT with `headers`, or a multipart POST with `fields` then `file`), "
            "and call `files/{id}/complete`. 400 `file_type_not_allowed` / `file_too_large`."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = FileCreateRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = file_create(owner=request.user, **serializer.validated_data)
        body = {
            **file_describe(file=created.file),
            "upload": created.upload,
            "expires_at": created.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        return Response(FileCreateResponseSerializer(body).data, status=201)


class FileDetailView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="files_retrieve",
        tags=["files"],
        responses={200: FileSerializer, 304: OpenApiResponse(description="Not modified")},
    )
    def get(self, request: Request, file_id: Any) -> Response:
        file = file_get_for_user(file_id=str(file_id), user=request.user)
        data = FileSerializer(file_describe(file=file)).data
        return conditional_get_response(request, data, file_etag(description=data))

    @extend_schema(operation_id="files_destroy", tags=["files"], responses={204: None})
    def delete(self, request: Request, file_id: Any) -> Response:
        file_delete(file_id=str(file_id), user=request.user)
        return Response(status=204)


class FileCompleteView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="files_complete",
        tags=["files"],
        request=None,
        responses={202: FileSerializer},
        description=(
            "The upload is done: a background job checks the real size and type, strips image "
            "metadata and makes thumbnails; poll `files/{id}` until `status` is ready or rejected. "
            "409 `upload_missing` when no bytes arrived yet."
        ),
    )
    def post(self, request: Request, file_id: Any) -> Response:
        file = file_complete(file_id=str(file_id), user=request.user)
        return Response(FileSerializer(file_describe(file=file)).data, status=202)


class FileUploadView(KeelAPIView):
    """The signed local upload endpoint: the signature in the URL is the capability."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes: list[Any] = []

    @extend_schema(
        operation_id="files_upload",
        tags=["files"],
        auth=[],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={204: None},
        parameters=_SIGNED_QUERY,
        description=(
            "Send the raw bytes with the declared Content-Type. 403 `invalid_signature` / "
            "`url_expired`; 413 `file_too_large` beyond the declared size or the limit."
        ),
    )
    def put(self, request: Request, file_id: Any) -> Response:
        raw = request._request
        file_upload_receive(
            file_id=str(file_id),
            expires=request.query_params.get("expires", ""),
            signature=request.query_params.get("signature", ""),
            content_type=raw.META.get("CONTENT_TYPE"),
            content_length=raw.META.get("CONTENT_LENGTH"),
            stream=raw,
        )
        return Response(status=204)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """``(start, end)`` for one satisfiable range, ``None`` for no/ignored range, False if unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # multiple or malformed ranges: answer with the whole file (RFC 9110 allows it)
    if not match[1]:
        length = int(match[2])
        if length == 0:
            return False
        return max(0, size - length), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


def _read_span(handle: Any, start: int, length: int) -> Any:
    handle.seek(start)
    remaining = length
    try:
        while remaining > 0:
            chunk = handle.read(min(64 * 1024, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


class FileDownloadView(KeelAPIView):
    """Signed local download of a ready file or one of its thumbnails (no bearer needed)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="files_download",
        tags=["files"],
        auth=[],
        parameters=[OpenApiParameter("variant", str, OpenApiParameter.QUERY), *_SIGNED_QUERY],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            206: OpenApiResponse(description="Partial content (Range)"),
        },
        description="403 `invalid_signature` / `url_expired`; 404 when the file is gone.",
    )
    def get(self, request: Request, file_id: Any) -> HttpResponse | StreamingHttpResponse:
        target = file_download_resolve(
            file_id=str(file_id),
            variant=request.query_params.get("variant", "original"),
            expires=request.query_params.get("expires", ""),
            signature=request.query_params.get("signature", ""),
        )
        storage = file_storage()
        size = storage.size(target.key)
        handle = storage.open(target.key, "rb")
        span = _byte_range(request.headers.get("Range"), size)
        response: HttpResponse | StreamingHttpResponse
        if span is False:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
        elif span is None or span is True:
            response = FileResponse(handle, content_type=target.content_type)
            response["Content-Length"] = str(size)
        else:
            start, end = span
            response = StreamingHttpResponse(
                _read_span(handle, start, end - start + 1), status=206, content_type=target.content_type
            )
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
            response["Content-Length"] = str(end - start + 1)
        response["Accept-Ranges"] = "bytes"
        response["Content-Disposition"] = target.disposition
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = f"private, max-age={max(0, target.expires - int(time.time()))}"
        if target.file.sha256 and target.key == target.file.stored_key:
            response["ETag"] = f'"{target.file.sha256[:32]}"'
        return response
