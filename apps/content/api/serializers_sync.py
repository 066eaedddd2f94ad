"""Request and response shapes of offline sync (contract section 3)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.content.api.serializers_documents import DocumentSerializer

PUSH_KEYS = ("mutations", "since")


class CrdtFieldStateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    state = serializers.CharField(help_text="The merged Yjs document as one update, base64.")
    state_vector = serializers.CharField(help_text="Its Yjs state vector, base64.")


class SyncDocumentSerializer(DocumentSerializer):
    crdt = serializers.DictField(
        child=CrdtFieldStateSerializer(),
        help_text=(
            "For each text_crdt field (by dotted path): the merged Yjs state and state vector. "
            "`data` holds the same text as a plain string."
        ),
    )


class SyncChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    collection = serializers.CharField()
    id = serializers.UUIDField()
    op = serializers.ChoiceField(choices=["upsert", "delete"])
    document = SyncDocumentSerializer(
        allow_null=True, help_text="The document as it is now; null for delete."
    )
    version = serializers.IntegerField()


class SyncChangesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    changes = SyncChangeSerializer(many=True)
    cursor = serializers.CharField(help_text="Opaque; pass it as `since` of the next request.")
    has_more = serializers.BooleanField(help_text="Ask again at once with the new cursor.")
    seq = serializers.IntegerField(help_text="The change-log position reached (as in realtime events).")


class SyncMutationSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Documents one mutation; each is checked on its own by the service (a malformed one is
    rejected with `invalid_mutation` without blocking the rest)."""

    mutation_id = serializers.CharField(help_text="Client-chosen, unique per user (a UUID).")
    collection = serializers.CharField()
    id = serializers.UUIDField(help_text="The document's id; chosen by the client for create.")
    op = serializers.ChoiceField(choices=["create", "update", "delete"])
    base_version = serializers.IntegerField(
        allow_null=True, help_text="The version the edit was made on; null for create."
    )
    data = serializers.DictField(
        required=False,
        help_text=(
            "create: the document; update: the changed fields (JSON merge patch). "
            "text_crdt fields carry a Yjs update, base64."
        ),
    )
    client_time = serializers.DateTimeField(required=False, help_text="When the edit was made, ISO-8601.")
    acl = serializers.DictField(required=False, help_text="Replaces the ACL, as in PATCH.")


class SyncPushSerializer(serializers.Serializer):  # type: ignore[type-arg]
    mutations = serializers.ListField(child=serializers.JSONField(), allow_empty=True)
    since = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="This device's sync/changes cursor: the answer's cursor then skips the push's own writes.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raw = self.initial_data if isinstance(self.initial_data, dict) else {}
        unknown = [key for key in raw if key not in PUSH_KEYS]
        if unknown:
            raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        limit = settings.SYNC_PUSH_MAX_MUTATIONS
        if len(attrs["mutations"]) > limit:
            raise serializers.ValidationError(
                {"mutations": [f"At most {limit} mutations per push; send the rest in another one."]}
            )
        return attrs


class SyncPushRequestSchemaSerializer(serializers.Serializer):  # type: ignore[type-arg]
    mutations = SyncMutationSerializer(many=True)
    since = serializers.CharField(required=False)


class SyncConflictSerializer(serializers.Serializer):  # type: ignore[type-arg]
    field = serializers.CharField(help_text="Dotted path inside data.")
    server_value = serializers.JSONField(allow_null=True)
    client_value = serializers.JSONField(allow_null=True)
    winner = serializers.ChoiceField(choices=["server", "client"])


class SyncMutationResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    mutation_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["applied", "merged", "conflict", "rejected"])
    document = SyncDocumentSerializer(
        allow_null=True, help_text="The server's document after the mutation (null when deleted or unknown)."
    )
    version = serializers.IntegerField(allow_null=True)
    conflicts = SyncConflictSerializer(many=True)
    code = serializers.CharField(
        required=False,
        help_text=(
            "When rejected: deleted, not_found, permission_denied, validation_error, "
            "invalid_mutation, conflict, payload_too_large."
        ),
    )
    detail = serializers.CharField(required=False)
    errors = serializers.DictField(required=False, child=serializers.ListField(child=serializers.CharField()))


class SyncPushResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = SyncMutationResultSerializer(many=True)
    cursor = serializers.CharField()
    seq = serializers.IntegerField()
