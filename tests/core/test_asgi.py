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


def test_the_urlconf_and_the_tls_context_are_made_with_the_application():
    """In a fresh process. Otherwise the first request waits for every view and the JSON
    API's schemas to be imported (about half a second), and the first answer, with every
    stream of the process, for the CA bundle to load."""
    script = (
        "import sys\n"
        "import chatapp.asgi\n"
        "from django.conf import settings\n"
        "from chatapp.llm.network import _tls_context\n"
        "made = _tls_context.cache_info().currsize\n"
        "print(settings.ROOT_URLCONF in sys.modules, 'chatapp.api' in sys.modules, made)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatapp.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True", "1"]
