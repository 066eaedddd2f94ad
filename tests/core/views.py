"""Views that exist only for the core convention tests (see tests/core/urls.py).

They do real work (they create users) so that tests can count what was done.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import structlog
from django.core.cache import cache
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import mixins, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.core.api.views import KeelAPIView, KeelGenericAPIView
from apps.core.exceptions import Conflict, PreconditionFailed, ValidationFailed
from apps.core.http import conditional_get_response, make_etag, require_if_match
from apps.core.renderers import ORJSONRenderer
from apps.core.throttling import IPScopedThrottle, ScopedRateThrottle, throttle_hit

logger = structlog.get_logger("tests.core.views")
stdlib_logger = logging.getLogger("tests.core.views.stdlib")

FAIL_NEXT_CACHE_KEY = "tests.core.fail_next"


class WorkSignal:
    """Lets a test know the server is inside the work (for the race tests)."""

    started = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.started = threading.Event()


class CreateUserSerializer(serializers.Serializer):
    email = serializers.EmailField()
    display_name = serializers.CharField(required=False, default="")
    sleep = serializers.FloatField(required=False, default=0, max_value=5)


class UserOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name", "created_at"]


class UserCollectionView(mixins.ListModelMixin, KeelGenericAPIView):
    """GET: the paginated list of users. POST: create one (the "work")."""

    queryset = User.objects.all()
    serializer_class = UserOutSerializer

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()] if self.request.method == "POST" else []

    def get(self, request: Request) -> Response:
        return self.list(request)

    def post(self, request: Request) -> Response:
        data = CreateUserSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.create_user(
            email=data.validated_data["email"], display_name=data.validated_data["display_name"]
        )
        WorkSignal.started.set()
        if data.validated_data["sleep"]:
            # Server-side slowness inside the transaction, so a concurrent
            # request with the same key really overlaps with this one.
            time.sleep(data.validated_data["sleep"])
        if cache.get(FAIL_NEXT_CACHE_KEY):
            cache.delete(FAIL_NEXT_CACHE_KEY)
            raise RuntimeError("the work failed after writing")
        return Response(
            UserOutSerializer(user).data,
            status=201,
            headers={"Location": f"/api/v1/test/users/{user.pk}", "ETag": make_etag(user.pk)},
        )


class AnonymousCreateView(KeelAPIView):
    """Open to anonymous callers: each call creates one user."""

    def post(self, request: Request) -> Response:
        user = User.objects.create_user(email=f"anon-{uuid.uuid4().hex}@example.com")
        return Response({"id": str(user.pk)}, status=201)


class UserDetailView(KeelAPIView):
    """A single object with ETag / If-None-Match / If-Match."""

    @staticmethod
    def _etag(user: User) -> str:
        return make_etag(user.pk, user.updated_at.timestamp())

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        user = User.objects.filter(pk=pk).first()
        if user is None:
            from apps.core.exceptions import NotFound

            raise NotFound()
        return conditional_get_response(request, UserOutSerializer(user).data, self._etag(user))

    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        from django.db import transaction

        with transaction.atomic():
            user = User.objects.select_for_update().get(pk=pk)
            require_if_match(request, self._etag(user))
            user.display_name = str(request.data.get("display_name", ""))
            user.save(update_fields=["display_name", "updated_at"])
        return Response(UserOutSerializer(user).data, headers={"ETag": self._etag(user)})


class AddressSerializer(serializers.Serializer):
    city = serializers.CharField()
    zip = serializers.RegexField(r"^\d{5}$")


class TagSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=5)


class NestedSerializer(serializers.Serializer):
    name = serializers.CharField()
    address = AddressSerializer()
    tags = TagSerializer(many=True)


class ValidateView(KeelAPIView):
    def post(self, request: Request) -> Response:
        serializer = NestedSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


class BoomView(KeelAPIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("internal detail: password=hunter2 for alice@example.com")

    def post(self, request: Request) -> Response:
        User.objects.create_user(email=str(request.data.get("email", "boom@example.com")))
        raise RuntimeError("internal detail after writing")


class Unrenderable:
    pass


class UnrenderableView(KeelAPIView):
    """Does the work, then answers with something the renderer cannot encode."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        User.objects.create_user(email=str(request.data["email"]))
        return Response({"value": Unrenderable()}, status=201)


class AbortRequest(BaseException):
    """Not an Exception: DRF's dispatch does not catch it."""


class BaseExceptionView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        User.objects.create_user(email=str(request.data["email"]))
        raise AbortRequest()


class SwallowedDatabaseErrorView(KeelAPIView):
    """Writes, then catches an IntegrityError without a savepoint of its own.

    ``?answer=conflict`` turns it into a 409, ``?answer=ok`` pretends all went well.
    """

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        email = str(request.data["email"])
        User.objects.create_user(email=email)
        try:
            User.objects.create_user(email=email)
        except IntegrityError:
            if request.query_params.get("answer") == "ok":
                return Response({"created": True}, status=201)
            raise Conflict("That user exists already.") from None
        return Response({"created": True}, status=201)


class RawUploadView(KeelAPIView):
    """Streams a raw body (a file upload to the local storage endpoint, say)."""

    permission_classes = [IsAuthenticated]

    def put(self, request: Request) -> Response:
        size = 0
        while chunk := request.stream.read(1024):
            size += len(chunk)
        User.objects.create_user(email=f"upload-{uuid.uuid4().hex}@example.com")
        return Response({"size": size}, status=201)


class BodyPeekingPermission(IsAuthenticated):
    """Reads the body before the view does (and before the fingerprint)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return super().has_permission(request, view) and "email" in request.data


class PeekedBodyView(KeelAPIView):
    permission_classes = [BodyPeekingPermission]

    def post(self, request: Request) -> Response:
        user = User.objects.create_user(email=str(request.data["email"]))
        return Response({"id": str(user.pk)}, status=201)


class ThrottledWorkView(KeelAPIView):
    """Counts each attempt per user with ``throttle_hit`` before doing the work."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        throttle_hit(scope="core_work", ident=str(request.user.pk))
        user = User.objects.create_user(email=str(request.data["email"]))
        return Response({"id": str(user.pk)}, status=201)


class NoContentView(KeelAPIView):
    permission_classes = [IsAuthenticated]

    def delete(self, request: Request) -> Response:
        User.objects.create_user(email=f"deleted-{uuid.uuid4().hex}@example.com")
        return Response(status=204)


class PreconditionView(KeelAPIView):
    """Refuses with a 4xx: the refusal is the answer, stored and replayed like any other."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        raise PreconditionFailed()


class ScopedThrottleView(KeelAPIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "core_test"

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class IPThrottleView(KeelAPIView):
    throttle_classes = [IPScopedThrottle]
    throttle_scope = "core_test_ip"

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class LogView(KeelAPIView):
    """Logs sensitive things the way careless code would (the header is not checked here)."""

    authentication_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        logger.info("payload_received", payload=request.data, email=request.data.get("email"))
        logger.info(
            "free_text",
            note=f"user {request.data.get('email')} sent {request.headers.get('Authorization', '')}",
        )
        stdlib_logger.warning(
            "stdlib line for %s with token=%s", request.data.get("email"), request.data.get("token")
        )
        return Response({"logged": True})


class RenderView(KeelAPIView):
    def get(self, request: Request) -> Response:
        import datetime

        return Response(
            {
                "aware_utc": datetime.datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=datetime.UTC),
                "aware_offset": datetime.datetime(
                    2026, 11, 21, 12, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
                ),
                "naive": datetime.datetime(2026, 11, 21, 10, 0, 0),
                "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
                "decimal": Decimal("19.90"),
                "text": "grüße",
            }
        )


class EchoView(KeelAPIView):
    def post(self, request: Request) -> Response:
        return Response({"received": request.data})


class HTMLRenderer(BaseRenderer):
    media_type = "text/html"
    format = "html"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None) -> bytes:
        return b"<html><body>rendered as html</body></html>"


class HTMLFirstView(KeelAPIView):
    """Offers HTML: its errors must still be problem+json."""

    renderer_classes = [HTMLRenderer, ORJSONRenderer]

    def get(self, request: Request) -> Response:
        if request.query_params.get("fail"):
            raise ValidationFailed(errors={"fail": ["Asked to fail."]})
        return Response({"ok": True})


class UnguardedAPIView(APIView):
    """A DRF view that forgot the Keel base class (only in tests.core.urls_unguarded)."""

    def get(self, request: Request) -> Response:
        return Response({})


def plain_keel_error(request: HttpRequest) -> HttpResponse:
    raise PreconditionFailed()


def plain_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("plain view failure with token=abc")


def plain_read_body(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"length": len(request.body)})


def plain_ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})
