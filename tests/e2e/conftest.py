"""End-to-end journeys in real Chromium: the browser suite's fixtures, plus an empty site.

Everything in tests/browser/conftest.py is available here (a live daphne with its own
database, the Llama API simulator, Chromium, `user`, `logged_in_page`, `screenshot`...).
`fresh_server` adds a second live server whose database has no accounts at all, for the
journey that starts with the site's very first signup.
"""

import pytest

from tests.browser.conftest import *  # noqa: F403
from tests.browser.conftest import SIMULATOR, serve_app


@pytest.fixture
def fresh_server(simulators, tmp_path_factory):
    """A live server on a newly migrated, empty database: the next signup is the first one."""
    upstream = simulators.get(SIMULATOR)
    with serve_app(upstream, tmp_path_factory.mktemp("fresh_server")) as server:
        yield server
