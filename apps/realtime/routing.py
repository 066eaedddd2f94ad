from django.urls import path, re_path

from apps.realtime.consumers import RealtimeConsumer

websocket_urlpatterns = [
    path("ws/v1/", RealtimeConsumer.as_asgi()),
    re_path(r"^ws/v1$", RealtimeConsumer.as_asgi()),
]
