# Staff roles as Django groups with their default permissions.
#
# support: looks people up and signs them out (users, sessions, devices, audit
#   log, exports; force logout).
# finance: looks people up (the payments app adds its own permissions).
# content_moderator: looks people up and reviews, edits and removes content.
#
# Permissions are normally created after all migrations ran (post_migrate);
# they are created here first so that a fresh database gets complete groups.

from django.db import migrations

ROLES = {
    "support": [
        "accounts.view_user",
        "accounts.force_logout_user",
        "accounts.view_session",
        "accounts.view_device",
        "accounts.view_auditevent",
        "accounts.view_dataexport",
    ],
    "finance": [
        "accounts.view_user",
    ],
    "content_moderator": [
        "accounts.view_user",
        "content.view_collection",
        "content.view_document",
        "content.change_document",
        "content.delete_document",
        "content.view_file",
        "content.delete_file",
    ],
}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".")
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_oauth"),
        ("content", "0002_documents"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(create_roles, remove_roles),
    ]
