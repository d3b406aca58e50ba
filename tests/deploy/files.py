"""Readers for the deployment files, shared by the tests in this folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, for the forms this repo uses."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def readme_variables() -> set[str]:
    """Variable names in the README's configuration tables."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M))


def clean_env(**values: str) -> dict[str, str]:
    """A minimal environment: nothing from the test suite's own settings leaks in."""
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    for name in ("HOME", "LANG", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(values)
    return env


def load_settings(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter and print the named ones, repr'd."""
    probe = (
        "import django; from django.conf import settings; django.setup(); "
        f"[print(repr(getattr(settings, n, None))) for n in {list(names)!r}]"
    )
    env = {**env, "DJANGO_SETTINGS_MODULE": "chatapp.settings"}
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
