"""Admin of the content app."""

import apps.content.admin_files  # noqa: F401 - registers the files admin
