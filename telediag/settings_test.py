"""Settings for the test suite: the real settings, with test databases and fast hashing.

Tests run on PostgreSQL (127.0.0.1:5432) by default, as in CI; TELEDIAG_TEST_DATABASE_URL
overrides it (for example sqlite:///... for a quick local run).
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment-0123456789abcdef")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("TELEDIAG_HTTPS", "false")
os.environ.setdefault("TELEDIAG_VAR_DIR", tempfile.mkdtemp(prefix="telediag-test-var-"))
os.environ["DATABASE_URL"] = os.environ.get("TELEDIAG_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/telediag")

from telediag.settings import *  # noqa: E402,F403
from telediag.settings import STATIC_ROOT, STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# Whitenoise warns at every start when the collected-static folder is missing.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
