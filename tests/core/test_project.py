import ast
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

from django.core.management import call_command


def test_system_checks_pass():
    call_command("check", fail_level="WARNING")


def test_migrations_match_the_models(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_pages_carry_a_strict_content_security_policy(client, db):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_favicon_points_at_the_logo(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/img/logo.svg"
    assert client.get(response["Location"]).status_code == 200


ROOT = Path(__file__).resolve().parents[2]


def test_the_product_never_imports_the_simulator():
    importers = []
    for path in (ROOT / "chatapp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(name.split(".")[0] == "llama_simulator" for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_the_product_runs_where_the_simulator_is_not_installed(tmp_path):
    # As in the production image: only chatapp on the path, no llama_simulator beside it.
    (tmp_path / "chatapp").symlink_to(ROOT / "chatapp")
    probe = (
        "import importlib.util, django\n"
        "from django.apps import apps\n"
        "from django.core.management import get_commands\n"
        "django.setup()\n"
        "import chatapp.asgi, chatapp.urls\n"
        "print(importlib.util.find_spec('llama_simulator') is None,"
        " apps.is_installed('llama_simulator'), 'llama_simulator' in get_commands())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chatapp.settings",
        "SECRET_KEY": "project-test-only",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]
