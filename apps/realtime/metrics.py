"""Prometheus metrics of the realtime server (exported as ``keel_realtime_…``)."""

from __future__ import annotations

from prometheus_client import Histogram

from apps.core import metrics

CONNECTIONS = metrics.gauge("realtime_connections", "Open WebSocket connections.")
SUBSCRIPTIONS = metrics.gauge("realtime_subscriptions", "Live subscriptions, by topic kind.", ["kind"])
ROOM_MEMBERS = metrics.gauge("realtime_room_members", "Room memberships held by the sockets of this process.")
EVENTS_PUBLISHED = metrics.counter(
    "realtime_events_published", "Events the relay published, by event source.", ["source"]
)
EVENTS_DELIVERED = metrics.counter(
    "realtime_events_delivered", "Event frames sent to sockets, by topic kind.", ["kind"]
)
EVENTS_DROPPED = metrics.counter(
    "realtime_events_dropped",
    "Events not delivered to a subscriber that should have had them, by reason "
    "(slow_consumer, matcher_error, gap_skipped).",
    ["reason"],
)
FRAMES_REFUSED = metrics.counter(
    "realtime_frames_refused", "Client frames answered with an error, by code.", ["code"]
)
RELAY_POSITION = metrics.gauge(
    "realtime_relay_position",
    "The last seq the relay published, by event source (0 on processes that do not lead).",
    ["source"],
    multiprocess_mode="max",
)
DELIVERY_LATENCY = Histogram(
    "keel_realtime_delivery_latency_seconds",
    "From the commit of a write to the send of its event frame to one subscriber.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0),
)
