"""Loaded with `-p tests.env_defaults` before Django starts: environment the suite needs."""

import os

os.environ.setdefault("SECRET_KEY", "insecure-key-for-the-test-suite-only")
os.environ["STATIC_MANIFEST"] = "0"
os.environ.pop("DEBUG", None)
