"""The browser suite's fixtures (live daphne, Chromium, simulator), for the team pages."""

from tests.browser.conftest import *  # noqa: F403
