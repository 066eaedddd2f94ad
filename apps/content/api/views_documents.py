"""Collections and documents API (contract section 2): thin views over services and selectors."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from apps.content.api.serializers_documents import (
    CollectionPageSerializer,
    DocumentCreateSerializer,
    DocumentPageSerializer,
    DocumentPatchSerializer,
    DocumentReplaceSerializer,
    DocumentSerializer,
)
from apps.content.models import Document
from apps.content.selectors.acl import principals_for_reading, principals_for_user
from apps.content.selectors.collections import (
    CollectionDef,
    collection_definition,
    collection_generation,
    collection_get,
    collection_snapshot,
    collections_visible_for,
    user_may_create_in,
)
from apps.content.selectors.documents import (
    document_get_readable,
    document_included_versions,
    document_list_page,
    document_render,
    documents_render,
)
from apps.content.selectors.query import (
    Cursor,
    DocumentQuery,
    cursor_decode,
    cursor_encode,
    document_include_parse,
    document_query_parse,
)
from apps.content.services.documents import document_create, document_delete, document_update
from apps.core.api.views import KeelAPIView
from apps.core.exceptions import NotFound, ValidationFailed
from apps.core.http import make_etag, not_modified, require_if_match
from apps.core.pagination import KeelCursorPagination

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_LIST_CACHE_PREFIX = "content:list:v1:"

_LIST_PARAMETERS = [
    OpenApiParameter(
        "where",
        OpenApiTypes.STR,
        description=(
            'JSON filter, e.g. {"data.done": false, "data.priority": {"$gte": 3}}. Keys: id, owner, '
            "created_at, updated_at, data.<path>; operators $eq $ne $gt $gte $lt $lte $in $nin $exists "
            "$contains $icontains $and $or."
        ),
    ),
    OpenApiParameter(
        "order",
        OpenApiTypes.STR,
        description="Comma-separated keys, '-' for descending: -created_at or data.priority,-created_at.",
    ),
    OpenApiParameter("fields", OpenApiTypes.STR, description="Sparse fieldset, e.g. id,data.title,version."),
    OpenApiParameter("include", OpenApiTypes.STR, description="ref fields to expand, e.g. project."),
    OpenApiParameter("include_count", OpenApiTypes.BOOL, description="Add the total `count`."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size, 1 to 100 (default 20)."),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next` or `previous`."),
]
_INCLUDE_PARAMETER = [
    OpenApiParameter("include", OpenApiTypes.STR, description="ref fields to expand, e.g. project."),
]


def _collection_or_404(name: str) -> CollectionDef:
    collection = collection_get(name=name)
    if collection is None:
        raise NotFound("No such collection.")
    return collection


def document_etag(document: Document) -> str:
    return make_etag(document.pk, document.version)


def _cache_headers(response: Response, request: Request) -> Response:
    if request.user.is_authenticated:
        response["Cache-Control"] = "private, no-cache"
    else:
        response["Cache-Control"] = f"public, max-age={settings.CONTENT_PUBLIC_CACHE_TTL}"
    patch_vary_headers(response, ["Authorization"])
    return response


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(errors={"limit": [f"Must be an integer from 1 to {MAX_LIMIT}."]}) from None
    return max(1, min(value, MAX_LIMIT))


class CollectionPagination(KeelCursorPagination):
    ordering = ("name",)


class CollectionListView(KeelAPIView):
    @extend_schema(
        operation_id="collections_list",
        tags=["collections"],
        responses={200: CollectionPageSerializer},
        description=(
            "Collections the caller can see, with their schemas: public_read ones, those the caller "
            "may create documents in, and those holding a document the caller may read."
        ),
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("cursor", OpenApiTypes.STR),
        ],
    )
    def get(self, request: Request) -> Response:
        principals = principals_for_user(user=request.user)
        queryset = collections_visible_for(user=request.user, principals=principals)
        paginator: CursorPagination = CollectionPagination()
        page = paginator.paginate_queryset(queryset, request, view=self) or []
        results = []
        for collection in page:
            snapshot = collection_snapshot(collection)
            results.append(
                {
                    **collection_definition(collection),
                    "can_create": user_may_create_in(
                        collection=snapshot, user=request.user, principals=principals
                    ),
                }
            )
        return _cache_headers(paginator.get_paginated_response(results), request)


class DocumentListView(KeelAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        operation_id="documents_list",
        tags=["documents"],
        parameters=_LIST_PARAMETERS,
        responses={200: DocumentPageSerializer},
        description="Readable documents of the collection, one page at a time. 400 invalid_query.",
    )
    def get(self, request: Request, name: str) -> Response:
        collection = _collection_or_404(name)
        cache_key = None
        if not request.user.is_authenticated:
            # Anonymous answers only ever hold public documents: the same for everyone.
            generation = collection_generation(name=collection.name)
            digest = hashlib.sha256(request.build_absolute_uri().encode()).hexdigest()
            cache_key = f"{_LIST_CACHE_PREFIX}{collection.name}:{generation}:{digest}"
            cached = cache.get(cache_key)
            if cached is not None:
                return _cache_headers(Response(cached), request)
        query = document_query_parse(collection=collection, params=request.query_params)
        limit = _limit(request)
        cursor = cursor_decode(query=query, raw=request.query_params.get("cursor"))
        principals = principals_for_reading(user=request.user)
        page = document_list_page(
            collection=collection, principals=principals, query=query, cursor=cursor, limit=limit
        )
        body: dict[str, Any] = {
            "results": documents_render(
                collection=collection,
                documents=page.documents,
                principals=principals,
                user=request.user,
                include=query.include,
                fields=query.fields,
            ),
            "next": self._link(request, query, page.next_cursor),
            "previous": self._link(request, query, page.previous_cursor),
        }
        if page.count is not None:
            body["count"] = page.count
        if cache_key is not None:
            cache.set(cache_key, body, settings.CONTENT_PUBLIC_CACHE_TTL)
        return _cache_headers(Response(body), request)

    @staticmethod
    def _link(request: Request, query: DocumentQuery, cursor: Cursor | None) -> str | None:
        if cursor is None:
            return None
        url = request.build_absolute_uri()
        return str(replace_query_param(url, "cursor", cursor_encode(query=query, cursor=cursor)))

    @extend_schema(
        operation_id="documents_create",
        tags=["documents"],
        request=DocumentCreateSerializer,
        responses={
            201: DocumentSerializer,
            400: OpenApiResponse(description="validation_error, with JSON-Schema errors per field"),
            403: OpenApiResponse(description="permission_denied"),
        },
        description="Create a document; the caller becomes its owner. `acl` defaults to the collection's.",
    )
    def post(self, request: Request, name: str) -> Response:
        collection = _collection_or_404(name)
        serializer = DocumentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # The service looks the caller's roles up only if the collection's rule needs them.
        document = document_create(
            collection=collection,
            actor=request.user,
            data=serializer.validated_data["data"],
            acl=serializer.validated_data.get("acl"),
        )
        body = document_render(
            collection=collection,
            document=document,
            principals=principals_for_reading(user=request.user),
            user=request.user,
        )
        location = request.build_absolute_uri(
            f"/api/v1/collections/{collection.name}/documents/{document.pk}"
        )
        return Response(body, status=201, headers={"ETag": document_etag(document), "Location": location})


class DocumentDetailView(KeelAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        operation_id="documents_retrieve",
        tags=["documents"],
        parameters=_INCLUDE_PARAMETER,
        responses={
            200: DocumentSerializer,
            304: OpenApiResponse(description="Not modified (If-None-Match)"),
            404: OpenApiResponse(description="not_found (also when not readable)"),
        },
    )
    def get(self, request: Request, name: str, document_id: str) -> Response:
        collection = _collection_or_404(name)
        include = document_include_parse(collection=collection, raw=request.query_params.get("include"))
        principals = principals_for_reading(user=request.user)
        document = document_get_readable(
            collection=collection, document_id=document_id, principals=principals
        )
        if document is None:
            raise NotFound()
        if not include:
            etag = document_etag(document)
            if not_modified(request, etag):
                return _cache_headers(Response(status=304, headers={"ETag": etag}), request)
        body = document_render(
            collection=collection,
            document=document,
            principals=principals,
            user=request.user,
            include=include,
        )
        etag = document_etag(document)
        if include:
            # The expanded documents are part of this representation.
            included = document_included_versions(rendered=body, include=include)
            etag = make_etag(document.pk, document.version, *included)
        if not_modified(request, etag):
            return _cache_headers(Response(status=304, headers={"ETag": etag}), request)
        return _cache_headers(Response(body, headers={"ETag": etag}), request)

    def _write_response(self, request: Request, collection: CollectionDef, document: Document) -> Response:
        body = document_render(
            collection=collection,
            document=document,
            principals=principals_for_reading(user=request.user),
            user=request.user,
        )
        return Response(body, headers={"ETag": document_etag(document)})

    @extend_schema(
        operation_id="documents_partial_update",
        tags=["documents"],
        request=DocumentPatchSerializer,
        responses={
            200: DocumentSerializer,
            403: OpenApiResponse(description="permission_denied (readable but not writable)"),
            412: OpenApiResponse(description="precondition_failed (stale If-Match)"),
        },
        description="JSON merge patch (RFC 7396) on data; `acl` replaces the ACL. Honours If-Match.",
    )
    def patch(self, request: Request, name: str, document_id: str) -> Response:
        collection = _collection_or_404(name)
        serializer = DocumentPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = document_update(
            collection=collection,
            document_id=document_id,
            actor=request.user,
            patch=serializer.validated_data.get("data"),
            acl=serializer.validated_data.get("acl"),
            precondition=lambda current: require_if_match(request, document_etag(current)),
        )
        return self._write_response(request, collection, document)

    @extend_schema(
        operation_id="documents_update",
        tags=["documents"],
        request=DocumentReplaceSerializer,
        responses={200: DocumentSerializer, 412: OpenApiResponse(description="precondition_failed")},
        description="Replace data (and the ACL when `acl` is sent). Honours If-Match.",
    )
    def put(self, request: Request, name: str, document_id: str) -> Response:
        collection = _collection_or_404(name)
        serializer = DocumentReplaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = document_update(
            collection=collection,
            document_id=document_id,
            actor=request.user,
            data=serializer.validated_data["data"],
            acl=serializer.validated_data.get("acl"),
            precondition=lambda current: require_if_match(request, document_etag(current)),
        )
        return self._write_response(request, collection, document)

    @extend_schema(
        operation_id="documents_destroy",
        tags=["documents"],
        responses={204: None, 412: OpenApiResponse(description="precondition_failed")},
        description="Delete; a tombstone stays for offline sync. Honours If-Match.",
    )
    def delete(self, request: Request, name: str, document_id: str) -> Response:
        collection = _collection_or_404(name)
        document_delete(
            collection=collection,
            document_id=document_id,
            actor=request.user,
            precondition=lambda current: require_if_match(request, document_etag(current)),
        )
        return Response(status=204)
