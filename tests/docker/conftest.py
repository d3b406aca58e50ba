"""The tests in this folder build nothing themselves: they run the images deploy/docker-ci.sh
built (named by APP_IMAGE, SIMULATOR_IMAGE and the *_IMAGE base images it exports), and only
with `pytest --docker`."""

import pytest


def pytest_collection_modifyitems(config, items):
    if config.getoption("--docker"):
        return
    skip = pytest.mark.skip(reason="runs Docker: deploy/docker-ci.sh (from .ci/run) runs these")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)
