from __future__ import annotations

from apps.core.api.paths import api_path
from apps.payments.api.views import ProductListView

urlpatterns = [
    *api_path("payments/products", ProductListView.as_view(), name="payments-products"),
]
