"""requirements/: every dependency pinned with hashes, and every install goes through it.

`make lock-check` (in CI) re-resolves against PyPI; these checks need no network.
"""

import re
import tomllib

import pytest

from tests.deploy.files import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SELF = PROJECT["name"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalize(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


def pins(lock: str) -> dict[str, list[str]]:
    """name -> the hashes of its one pinned version."""
    text = (ROOT / "requirements" / lock).read_text()
    result = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==\S+", block)
        if match:
            result[normalize(match.group(1))] = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    return result


def extras() -> dict[str, list[str]]:
    return PROJECT.get("optional-dependencies", {})


def wanted(requirements: list[str]) -> set[str]:
    """Requirement names, the project's own extras (`name[demo]`) expanded."""
    names = set()
    for requirement in requirements:
        name = normalize(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
        if name == normalize(SELF):
            for extra in re.search(r"\[(.+)\]", requirement).group(1).split(","):
                names |= wanted(extras()[extra.strip()])
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("lock", ["base.txt", *[f"{extra}.txt" for extra in extras()]])
def test_every_dependency_is_pinned_with_hashes(lock):
    locked = pins(lock)
    needed = wanted(PROJECT["dependencies"])
    if lock != "base.txt":
        needed |= wanted(extras()[lock.removesuffix(".txt")])
    assert needed - set(locked) == set(), f"run `make lock`: missing from requirements/{lock}"
    for name, hashes in locked.items():
        assert hashes, f"{name} has no hash in requirements/{lock}"


def test_the_base_lock_carries_no_development_tools():
    tools = {"pytest", "pytest-django", "ruff", "playwright", "py-spy"}
    assert tools <= set(pins("dev.txt"))
    assert tools & set(pins("base.txt")) == set()
    # The simulator's server is in the demo lock; in the base lock only because the MCP SDK
    # (tool servers) requires it, never on the project's own behalf.
    assert "uvicorn" in pins("demo.txt")
    assert via("base.txt", "uvicorn") == {"mcp"}


def versions(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {normalize(n): v for n, v in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)}


def test_an_image_built_from_the_s3_lock_keeps_the_base_pins():
    # docs/uploads.md: an image for a bucket installs requirements/s3.txt in place of base.txt.
    base, s3 = versions("base.txt"), versions("s3.txt")
    assert {name: s3.get(name) for name in base} == base
    assert {"django-storages", "boto3"} <= set(s3) - set(base)


def via(lock: str, name: str) -> set[str]:
    """The packages that pull `name` into `lock`, as pip-compile's "# via" lines name them."""
    text = (ROOT / "requirements" / lock).read_text()
    block = next(b for b in re.split(r"\n(?=\S)", text) if re.match(rf"{name}==", b))
    names = re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9._-]+)\s*$", block, re.M)
    return {normalize(n) for n in names} - {"via"}


def test_installs_go_through_the_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes" in makefile
    for lock in ("base", "demo", "dev"):
        assert f"-r requirements/{lock}.txt" in makefile
    assert re.search(r"^lock:", makefile, re.M) and re.search(r"^lock-check:", makefile, re.M)
    assert "make lock-check" in (ROOT / ".ci/run").read_text()
