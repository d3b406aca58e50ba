"""The ASGI application's module."""

import gc
import importlib
import os
import subprocess
import sys


def test_what_the_application_loads_is_kept_out_of_full_collections():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    importlib.reload(importlib.import_module("chatapp.asgi"))
    assert gc.get_freeze_count() > 10_000


def test_the_urlconf_is_imported_with_the_application_not_by_the_first_request():
    """In a fresh process: the first request would otherwise wait for every view and the
    JSON API's schemas to be imported (about half a second)."""
    script = (
        "import sys\n"
        "import chatapp.asgi\n"
        "from django.conf import settings\n"
        "print(settings.ROOT_URLCONF in sys.modules, 'chatapp.api' in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatapp.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True"]
