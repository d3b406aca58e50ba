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


def build_args() -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults."""
    args = {}
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            break
        name, _, default = rest.partition("=")
        args[name] = default
    return args


def stages() -> list[list[tuple[str, str]]]:
    """Each stage's instructions, its FROM first with the global ARG defaults filled in."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            for name, default in build_args().items():
                rest = rest.replace(f"${{{name}}}", default)
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} (only when unset, not when empty) and
    ${VAR:?error}, for the forms this repo uses."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name) or (op == "-" and name in env):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?|-)([^}]*))?\}", one, value)


def documented_variables() -> set[str]:
    """Variable names in the first column of the tables in docs/configuration.md."""
    text = (ROOT / "docs/configuration.md").read_text()
    first_cells = re.findall(r"^\| ([^|]+) \|", text, re.M)
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


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
