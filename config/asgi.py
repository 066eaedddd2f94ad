"""ASGI entry point: the WebSocket at ``/ws/v1/`` (and, in development, HTTP too).

Production serves HTTP from gunicorn's WSGI workers and only ``/ws/`` from
uvicorn on this application (see docs/decisions.md for why); ``make run``'s
single process serves both from here.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
