"""Request and response shapes of the files API (contract section 2, "Files")."""

from __future__ import annotations

from rest_framework import serializers


class FileCreateRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    filename = serializers.CharField(max_length=1024, trim_whitespace=True)
    content_type = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=1, max_value=2**62)
    purpose = serializers.CharField(max_length=32, required=False, allow_blank=False)


class FileThumbnailsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    small = serializers.CharField(allow_null=True, help_text="Signed, expiring URL (null until ready).")
    medium = serializers.CharField(allow_null=True, help_text="Signed, expiring URL (null until ready).")


class FileSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    filename = serializers.CharField()
    content_type = serializers.CharField(help_text="The detected type once ready, the declared one before.")
    size = serializers.IntegerField(help_text="Bytes served once ready, the declared size before.")
    status = serializers.ChoiceField(choices=["pending", "ready", "rejected"])
    purpose = serializers.CharField()
    url = serializers.CharField(allow_null=True, help_text="Signed, expiring URL (null until ready).")
    thumbnails = FileThumbnailsSerializer()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True)
    rejection_reason = serializers.CharField(
        allow_null=True,
        help_text=(
            "Why processing refused the file: file_type_not_allowed, content_type_mismatch, "
            "file_too_large, file_empty, image_unreadable, image_too_large, upload_missing, "
            "processing_timeout."
        ),
    )
    rejection_detail = serializers.CharField(allow_null=True)
    urls_expire_at = serializers.CharField(allow_null=True, help_text="Fetch the file again before this.")
    created_at = serializers.CharField()
    updated_at = serializers.CharField()


class FileUploadSerializer(serializers.Serializer):  # type: ignore[type-arg]
    method = serializers.ChoiceField(choices=["PUT", "POST"])
    url = serializers.CharField()
    headers = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="PUT: send these headers with the raw bytes."
    )
    fields = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="POST: send these form fields first, then the bytes as the form field `file`.",
    )


class FileCreateResponseSerializer(FileSerializer):
    upload = FileUploadSerializer()
    expires_at = serializers.CharField(help_text="The upload must start before this.")
