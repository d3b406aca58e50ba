"""The ASGI application's module."""

import gc
import importlib


def test_what_the_application_loads_is_kept_out_of_full_collections():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    importlib.reload(importlib.import_module("chatapp.asgi"))
    assert gc.get_freeze_count() > 10_000
