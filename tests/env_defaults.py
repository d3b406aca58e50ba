"""Loaded with `-p tests.env_defaults` before Django starts: environment the suite needs."""

import os

os.environ.setdefault("SECRET_KEY", "insecure-key-for-the-test-suite-only")
os.environ["STATIC_MANIFEST"] = "0"
# The test client speaks plain HTTP; tests/core/test_deploy_settings.py covers the redirect.
os.environ["SECURE_SSL_REDIRECT"] = "0"
os.environ.pop("DEBUG", None)
# A title request after each first answer would add a request to every test's upstream;
# tests/chat/test_titles.py turns it on.
os.environ["LLAMA_GENERATE_TITLES"] = "0"
