"""The browser suite's fixtures (live daphne, Chromium, simulator), for the Tools page."""

from tests.browser.conftest import *  # noqa: F403
