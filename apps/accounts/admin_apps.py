"""The admin application with Keel's site (MFA for staff, see ``admin_mfa``).

Kept apart from ``admin_mfa`` because Django imports app configs before the
models are ready.
"""

from django.contrib.admin.apps import AdminConfig


class KeelAdminConfig(AdminConfig):
    default_site = "apps.accounts.admin_mfa.KeelAdminSite"
