"""Request and response shapes of collections and documents (contract section 2)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

SERVER_SET_FIELDS = ("id", "collection", "owner", "version", "created_at", "updated_at", "deleted_at")


class AclSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Documents the ACL shape; the service validates it (``acl_normalize``)."""

    public = serializers.CharField(
        allow_null=True, required=False, help_text='"read": anyone, signed in or not, may read.'
    )
    authenticated = serializers.CharField(
        allow_null=True, required=False, help_text='"read": every signed-in user may read.'
    )
    users = serializers.DictField(
        child=serializers.ChoiceField(choices=["read", "write"]),
        required=False,
        help_text="User id to access.",
    )
    roles = serializers.DictField(
        child=serializers.ChoiceField(choices=["read", "write"]),
        required=False,
        help_text="Role (group) name to access.",
    )


class _DocumentWriteBase(serializers.Serializer):  # type: ignore[type-arg]
    acl = serializers.JSONField(
        required=False,
        help_text="Replaces the whole ACL (only the owner may change it). Shape: see Acl.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raw = self.initial_data if isinstance(self.initial_data, dict) else {}
        errors: dict[str, list[str]] = {}
        for key in raw:
            if key in SERVER_SET_FIELDS:
                errors[key] = ["Set by the server; leave it out of the request."]
            elif key not in self.fields:
                errors[key] = ["Unknown field."]
        if "acl" in raw and raw["acl"] is None:
            errors["acl"] = ["Must be an object; send {} for a private document."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class DocumentCreateSerializer(_DocumentWriteBase):
    data = serializers.JSONField(help_text="The document's fields, valid against the collection's schema.")


class DocumentReplaceSerializer(_DocumentWriteBase):
    data = serializers.JSONField(help_text="The new data, replacing the old one entirely.")


class DocumentPatchSerializer(_DocumentWriteBase):
    data = serializers.JSONField(
        required=False,
        help_text="A JSON merge patch (RFC 7396) applied to data: null removes a field.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "data" not in attrs and "acl" not in attrs:
            raise serializers.ValidationError({"data": ["Send data (a merge patch) and/or acl."]})
        return attrs


class DocumentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField()
    collection = serializers.CharField()
    data = serializers.DictField(
        help_text=(
            "The fields. `file` fields come back as file objects with signed URLs (null when "
            "unavailable); fields named in `include` as the referenced document (null when not readable)."
        )
    )
    owner = serializers.UUIDField(allow_null=True)
    acl = AclSerializer()
    version = serializers.IntegerField(help_text="Increases by one on every change.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DocumentPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = DocumentSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    count = serializers.IntegerField(required=False, help_text="Only with include_count=true.")


class CollectionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    schema = serializers.DictField(help_text="JSON Schema (draft 2020-12) with Keel's file/ref/text_crdt.")
    indexes = serializers.ListField(
        child=serializers.JSONField(),
        help_text='Indexed paths inside data: "priority", or a composite list such as ["category", "score"].',
    )
    default_acl = AclSerializer()
    create_permission = serializers.CharField()
    public_read = serializers.BooleanField()
    conflict_policy = serializers.CharField()
    can_create = serializers.BooleanField(help_text="Whether the caller may create documents here.")


class CollectionPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = CollectionSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
