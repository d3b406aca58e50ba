"""The production settings path: `check --deploy` is clean, and unsafe setups fail at start-up."""

import secrets
import subprocess
import sys

import pytest

from tests.deploy.files import ROOT, clean_env, load_settings

PRODUCTION = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "chat.example.com"}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
    )


def settings_of(*names: str, **env: str) -> list[str]:
    result = load_settings(clean_env(**env), *names)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_check_deploy_is_clean_with_the_defaults():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_turning_the_https_redirect_off_is_reported_by_check_deploy():
    result = manage("check", "--deploy", **PRODUCTION, SECURE_SSL_REDIRECT="0")
    assert "security.W008" in result.stderr


@pytest.mark.parametrize("key", ["field-key", "a" * 40])
def test_a_guessable_field_encryption_key_is_reported_by_check_deploy(key):
    result = manage("check", "--deploy", **PRODUCTION, FIELD_ENCRYPTION_KEY=key)
    assert result.returncode == 0  # a warning: the key still works
    assert "chatapp.W001" in result.stderr and "FIELD_ENCRYPTION_KEY has" in result.stderr
    assert key not in result.stderr
    strong = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **PRODUCTION,
        FIELD_ENCRYPTION_KEY=secrets.token_urlsafe(32),
    )
    assert strong.returncode == 0, strong.stderr


def test_a_missing_secret_key_stops_start_up_naming_it():
    result = manage("check", ALLOWED_HOSTS="chat.example.com")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "Configuration error: SECRET_KEY must be set when DEBUG is off"
    ]


def test_a_wildcard_host_is_refused_in_production_only():
    result = manage("check", **PRODUCTION | {"ALLOWED_HOSTS": "*"})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must list host names, not '*'" in result.stderr
    assert settings_of("ALLOWED_HOSTS", DEBUG="1", ALLOWED_HOSTS="*") == ["['*']"]


def test_production_defaults_are_secure():
    redirect, hsts, subdomains, proxy_header, fmt = settings_of(
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
        "LOGGING",
        **PRODUCTION,
    )
    assert (redirect, hsts, subdomains, proxy_header) == ("True", "31536000", "True", "None")
    assert "'formatter': 'json'" in fmt


def test_debug_relaxes_https_and_logs_text():
    redirect, hsts, fmt = settings_of(
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "LOGGING", DEBUG="1"
    )
    assert (redirect, hsts) == ("False", "0")
    assert "'formatter': 'text'" in fmt


def test_the_switches_are_read():
    values = settings_of(
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
        "METRICS_ALLOWED_NETWORKS",
        "STATIC_ROOT",
        **PRODUCTION,
        SECURE_SSL_REDIRECT="off",
        SECURE_HSTS_SECONDS="3600",
        TRUST_X_FORWARDED_PROTO="yes",
        METRICS_ALLOWED_NETWORKS="10.0.0.0/8, 127.0.0.1",
        STATIC_ROOT="/srv/static",
    )
    assert values == [
        "False",
        "3600",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
        "[IPv4Network('10.0.0.0/8'), IPv4Network('127.0.0.1/32')]",
        "PosixPath('/srv/static')",
    ]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("TRUST_X_FORWARDED_PROTO", "y"),
        ("METRICS_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_fail_naming_the_variable(name, bad):
    result = load_settings(clean_env(**PRODUCTION, **{name: bad}), "DEBUG")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last and name in last
