from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from apps.realtime.consumers import RealtimeConsumer

websocket_urlpatterns = [
    path("ws/v1/", RealtimeConsumer.as_asgi()),
    re_path(r"^ws/v1$", RealtimeConsumer.as_asgi()),
    # Any other path is refused at the handshake (HTTP 403) instead of
    # failing inside the router with a server error.
    re_path(r"", WebsocketDenier.as_asgi()),
]
