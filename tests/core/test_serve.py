"""`manage.py serve`: the settings it refuses, before any server process starts."""

import subprocess
import sys

import pytest

from chatapp.core.supervisor import ServeError, check_processes, cpu_count
from tests.deploy.files import ROOT, clean_env


def serve(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "0"],
        cwd=ROOT,
        env=clean_env(SECRET_KEY="serve-test-only", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_several_processes_without_redis_are_refused_with_what_to_set():
    result = serve(WEB_CONCURRENCY="3")
    assert result.returncode != 0
    assert "WEB_CONCURRENCY=3 needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving on" not in result.stderr


def test_a_web_concurrency_that_is_not_a_positive_number_stops_start_up():
    result = serve(WEB_CONCURRENCY="0")
    assert result.returncode != 0
    assert "WEB_CONCURRENCY must be between 1 and 256 (got 0)" in result.stderr


def test_one_process_needs_no_redis_and_several_need_it():
    check_processes(1, "")
    check_processes(4, "redis://127.0.0.1:6379/0")
    with pytest.raises(ServeError, match="REDIS_URL"):
        check_processes(2, "")


def test_one_per_core_counts_at_least_one_and_no_more_than_the_affinity():
    import os

    assert 1 <= cpu_count() <= len(os.sched_getaffinity(0))
