from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import KeelGenericAPIView
from apps.core.pagination import KeelCursorPagination
from apps.payments.api.serializers import ProductSerializer
from apps.payments.selectors import product_list_active


class CatalogPagination(KeelCursorPagination):
    # The order staff give the products, as a store listing shows them.
    ordering = ("sort_order", "created_at", "id")


class ProductListView(KeelGenericAPIView):
    """The catalog. Public, like a store listing: no sign-in needed to see what is on sale."""

    permission_classes = (AllowAny,)
    serializer_class = ProductSerializer
    pagination_class = CatalogPagination
    filter_backends = ()

    @extend_schema(operation_id="payments_products_list", responses=ProductSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(product_list_active())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
