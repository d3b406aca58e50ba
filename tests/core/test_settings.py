"""Settings come from the environment; a bad value stops start-up naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'debug': settings.DEBUG, 'engine': settings.DATABASES['default']['ENGINE'], "
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'hosts': settings.ALLOWED_HOSTS, "
    "'protocol': settings.LLAMA_API_PROTOCOL, 'base': settings.LLAMA_API_BASE_URL, "
    "'model': settings.LLAMA_DEFAULT_MODEL, 'cookie_secure': settings.SESSION_COOKIE_SECURE}))"
)
VARIABLES = (
    "SECRET_KEY DEBUG ALLOWED_HOSTS DATABASE_URL REDIS_URL LLAMA_API_KEY LLAMA_API_BASE_URL "
    "LLAMA_API_PROTOCOL LLAMA_DEFAULT_MODEL CSRF_TRUSTED_ORIGINS SIGNUP_POLICY "
    "SIGNUP_ALLOWED_DOMAINS PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET CHAT_STALE_GENERATION_SECONDS "
    "LLAMA_FIRST_TOKEN_TIMEOUT LLAMA_MAX_ATTEMPTS LLAMA_MODEL_CONTEXT LLAMA_MODELS EMAIL_TIMEOUT"
).split()


def load_settings(**overrides):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["DJANGO_SETTINGS_MODULE"] = "chatapp.settings"
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )


def loaded_setting(name: str, **overrides):
    """One setting's value as the project loads it from this environment."""
    import json

    probe = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps(settings.{name}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="chatapp.settings", **overrides)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def loaded(**overrides) -> dict:
    import json

    result = load_settings(**overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_zero_setup():
    values = loaded(SECRET_KEY="x" * 50)
    assert values["debug"] is False
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["layer"] == "chatapp.core.layers.InMemoryChannelLayer"
    assert values["hosts"] == ["127.0.0.1", "localhost"]
    assert values["protocol"] == "llama"
    assert values["base"] == "https://api.llama.com/v1"
    assert values["model"] == "Llama-4-Maverick-17B-128E-Instruct-FP8"
    assert values["cookie_secure"] is True


def test_postgres_and_redis_urls_switch_backends():
    values = loaded(
        SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/chat",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["layer"] == "chatapp.core.layers.RedisChannelLayer"


def test_debug_generates_a_dev_secret_key_and_relaxes_cookie_security():
    values = loaded(DEBUG="1")
    assert values["debug"] is True
    assert values["cookie_secure"] is False


def test_allowed_hosts_and_protocol_are_read():
    values = loaded(
        SECRET_KEY="x" * 50, ALLOWED_HOSTS="chat.example.com, 10.0.0.5", LLAMA_API_PROTOCOL="openai"
    )
    assert values["hosts"] == ["chat.example.com", "10.0.0.5"]
    assert values["protocol"] == "openai"
    patterns = loaded(SECRET_KEY="x" * 50, ALLOWED_HOSTS=".example.com,[::1],localhost")
    assert patterns["hosts"] == [".example.com", "[::1]", "localhost"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "x" * 50, "DEBUG": "ture"}, "DEBUG"),
        ({"SECRET_KEY": "x" * 50, "DATABASE_URL": "mysql://root@localhost/chat"}, "DATABASE_URL"),
        ({"SECRET_KEY": "x" * 50, "DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"SECRET_KEY": "x" * 50, "REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"SECRET_KEY": "x" * 50, "REDIS_URL": "redis://:pw@redis:port/0"}, "REDIS_URL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_API_PROTOCOL": "grpc"}, "LLAMA_API_PROTOCOL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_API_BASE_URL": "api.llama.com/v1"}, "LLAMA_API_BASE_URL"),
        # A host left empty, say by a variable in a template that was not set.
        ({"SECRET_KEY": "x" * 50, "LLAMA_API_BASE_URL": "https:///v1"}, "LLAMA_API_BASE_URL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_API_BASE_URL": "http://vllm:port/v1"}, "LLAMA_API_BASE"),
        ({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": ","}, "ALLOWED_HOSTS"),
        # Never equal to a request's host name: every page would be a 400.
        ({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "https://chat.example.com"}, "ALLOWED_HOSTS"),
        ({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "chat.example.com:8443"}, "ALLOWED_HOSTS"),
        ({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "chat.example.com/"}, "ALLOWED_HOSTS"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_IDLE_TIMEOUT": "soon"}, "LLAMA_IDLE_TIMEOUT"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_MAX_ATTEMPTS": "9"}, "LLAMA_MAX_ATTEMPTS"),
        # Blank (a template's empty line): every chat asked the upstream for model "".
        ({"SECRET_KEY": "x" * 50, "LLAMA_DEFAULT_MODEL": ""}, "LLAMA_DEFAULT_MODEL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_DEFAULT_MODEL": "Llama 3.3"}, "LLAMA_DEFAULT_MODEL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_GUARD_MODEL": " "}, "LLAMA_GUARD_MODEL"),
        # Longer than a conversation (or a team policy) stores: every chat on it failed to save.
        ({"SECRET_KEY": "x" * 50, "LLAMA_DEFAULT_MODEL": "m" * 201}, "LLAMA_DEFAULT_MODEL"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_GUARD_MODEL": "m" * 201}, "LLAMA_GUARD_MODEL"),
        # Blank: uploads (or collectstatic) went to whatever the working directory was.
        ({"SECRET_KEY": "x" * 50, "MEDIA_ROOT": ""}, "MEDIA_ROOT"),
        ({"SECRET_KEY": "x" * 50, "STATIC_ROOT": " "}, "STATIC_ROOT"),
        ({"SECRET_KEY": "x" * 50, "CSRF_TRUSTED_ORIGINS": "chat.example.com"}, "CSRF_TRUSTED"),
        ({"SECRET_KEY": "x" * 50, "SIGNUP_POLICY": "closed"}, "SIGNUP_POLICY"),
        ({"SECRET_KEY": "x" * 50, "CHAT_STALE_GENERATION_SECONDS": "60"}, "CHAT_STALE_GENERATION"),
        (
            {
                "SECRET_KEY": "x" * 50,
                "CHAT_STALE_GENERATION_SECONDS": "80",
                "LLAMA_FIRST_TOKEN_TIMEOUT": "90",
                "LLAMA_MAX_ATTEMPTS": "1",
            },
            "CHAT_STALE_GENERATION",
        ),
        ({"SECRET_KEY": "x" * 50, "SIGNUP_POLICY": "domain"}, "SIGNUP_ALLOWED_DOMAINS"),
        (
            {"SECRET_KEY": "x" * 50, "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET": "lots"},
            "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET",
        ),
        # nan compares false with every bound, so it used to pass them all.
        ({"SECRET_KEY": "x" * 50, "LLAMA_CONNECT_TIMEOUT": "nan"}, "LLAMA_CONNECT_TIMEOUT"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_FIRST_TOKEN_TIMEOUT": "nan"}, "LLAMA_FIRST_TOKEN"),
        ({"SECRET_KEY": "x" * 50, "UPLOAD_UNATTACHED_HOURS": "inf"}, "UPLOAD_UNATTACHED_HOURS"),
        # Beyond what date arithmetic or the budget's column can hold: crashes once running.
        ({"SECRET_KEY": "x" * 50, "LOGIN_LOCKOUT_MINUTES": "10000000000"}, "LOGIN_LOCKOUT"),
        ({"SECRET_KEY": "x" * 50, "UPLOAD_UNATTACHED_HOURS": "1e300"}, "UPLOAD_UNATTACHED"),
        ({"SECRET_KEY": "x" * 50, "CHAT_STALE_GENERATION_SECONDS": "100000000000"}, "CHAT_STALE"),
        (
            {"SECRET_KEY": "x" * 50, "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET": str(10**19)},
            "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET",
        ),
        # Not UTF-8 (a byte copied from a binary file): each provider key saved or read was a 500.
        ({"SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY": "key-\udcff-bytes"}, "FIELD_ENCRYPTION"),
        # boto3 refused these only at the first upload.
        (
            {
                "SECRET_KEY": "x" * 50,
                "UPLOADS_S3_BUCKET": "b",
                "UPLOADS_S3_ENDPOINT_URL": "minio:9000",
            },
            "UPLOADS_S3_ENDPOINT_URL",
        ),
        (
            {"SECRET_KEY": "x" * 50, "UPLOADS_S3_BUCKET": "b", "UPLOADS_S3_ENDPOINT_URL": "s3://b"},
            "UPLOADS_S3_ENDPOINT_URL",
        ),
        # Without the bucket, its other settings were ignored: files stayed on the local disk.
        ({"SECRET_KEY": "x" * 50, "UPLOADS_S3_ENDPOINT_URL": "https://minio:9000"}, "BUCKET"),
        (
            {"SECRET_KEY": "x" * 50, "UPLOADS_S3_REGION": "eu", "UPLOADS_S3_PREFIX": "chat"},
            "UPLOADS_S3_REGION and UPLOADS_S3_PREFIX are set but UPLOADS_S3_BUCKET is not",
        ),
        # Never equal to a model's id, so that model silently never saw images.
        ({"SECRET_KEY": "x" * 50, "LLAMA_IMAGE_MODELS": "Llama 4 Scout"}, "LLAMA_IMAGE_MODELS"),
        ({"SECRET_KEY": "x" * 50, "LLAMA_IMAGE_MODELS": "a,llava\x0713b"}, "LLAMA_IMAGE_MODELS"),
        # An id no model has (or one no conversation can store), or one named twice.
        *(
            ({"SECRET_KEY": "x" * 50, "LLAMA_MODELS": models}, "LLAMA_MODELS")
            for models in (
                "Llama 4 Scout",
                "qwen2.5:32b,llava\x0713b",
                "qwen2.5:32b, llama3.1:8b ,qwen2.5:32b",
                "m" * 201,
            )
        ),
        # A window that is no whole number of tokens, or one that is surely a slip.
        *(
            ({"SECRET_KEY": "x" * 50, "LLAMA_MODEL_CONTEXT": windows}, "LLAMA_MODEL_CONTEXT")
            for windows in (
                "my-model",
                "my-model=",
                "=32768",
                "my model=32768",
                "my-model=128k",
                "my-model=0",
                "my-model=-8192",
                "my-model=32",
                "my-model=100000000",
                "my-model=32768,my-model=65536",
            )
        ),
        # Refused by Django's SMTP backend as each mail went: an invitation was a 500, a
        # password reset mail was lost with only a log line.
        *(
            ({"SECRET_KEY": "x" * 50, "DEFAULT_FROM_EMAIL": sender}, "DEFAULT_FROM_EMAIL")
            for sender in (
                "chat@example.com, ops@example.com",
                "not an address",
                "Llama <chat@example.com>\nBcc: all@example.com",
            )
        ),
    ],
)
def test_bad_values_fail_naming_the_variable(overrides, named):
    result = load_settings(**overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.strip().splitlines()[-1]


def test_the_sender_may_carry_a_name():
    sender = "Llama team chat <chat@example.com>"
    assert loaded_setting("DEFAULT_FROM_EMAIL", SECRET_KEY="x" * 50, DEFAULT_FROM_EMAIL=sender) == (
        sender
    )
    for unset in ({}, {"DEFAULT_FROM_EMAIL": ""}):  # empty, as compose passes an unset one
        default = loaded_setting("DEFAULT_FROM_EMAIL", SECRET_KEY="x" * 50, **unset)
        assert default == "llama-team-chat@localhost"


def test_a_mail_server_that_never_answers_is_given_up_on():
    """Django's SMTP backend waits forever by default: a mail server that took the connection
    and never answered held the page that sent the mail (and a signup's transaction) for good."""
    assert loaded_setting("EMAIL_TIMEOUT", SECRET_KEY="x" * 50) == 10
    assert loaded_setting("EMAIL_TIMEOUT", SECRET_KEY="x" * 50, EMAIL_TIMEOUT="2.5") == 2.5
    for bad in ("0", "never"):
        result = load_settings(SECRET_KEY="x" * 50, EMAIL_TIMEOUT=bad)
        assert result.returncode != 0
        assert "EMAIL_TIMEOUT must be" in result.stderr.strip().splitlines()[-1]


def test_the_stale_window_outlasts_a_retrying_answers_quietest_stretch():
    from chatapp.llm.errors import RETRY_AFTER_CAP

    # First-token wait (60) plus the longest retry wait the client honours, and a margin.
    assert loaded_setting("LLAMA_RETRY_WAIT_CAP_SECONDS", SECRET_KEY="x" * 50) == RETRY_AFTER_CAP
    assert loaded_setting("CHAT_STALE_GENERATION_SECONDS", SECRET_KEY="x" * 50) == 150
    one_attempt = {
        "SECRET_KEY": "x" * 50,
        "LLAMA_MAX_ATTEMPTS": "1",
        "LLAMA_FIRST_TOKEN_TIMEOUT": "10",
    }
    assert loaded_setting("CHAT_STALE_GENERATION_SECONDS", **one_attempt) == 60
    custom = {**one_attempt, "CHAT_STALE_GENERATION_SECONDS": "15"}
    assert loaded_setting("CHAT_STALE_GENERATION_SECONDS", **custom) == 15


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CHAT_MAX_CONTENT_BYTES", "0", "CHAT_MAX_CONTENT_BYTES must be at least 1 (got 0)"),
        ("LLAMA_MAX_ATTEMPTS", "2.5", "LLAMA_MAX_ATTEMPTS must be a whole number (got '2.5')"),
        ("LLAMA_GUARD_TIMEOUT", "NaN", "LLAMA_GUARD_TIMEOUT must be a finite number (got 'NaN')"),
        # A budget of 0 is one the policy page and API cannot hold: every change the owner
        # made there was refused, naming a budget they had not touched.
        (
            "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET",
            "0",
            "PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET must be between 1 and 1000000000000000 (got 0)",
        ),
    ],
)
def test_a_bad_number_is_refused_with_the_values_it_may_take(name, value, message):
    result = load_settings(SECRET_KEY="x" * 50, **{name: value})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(message)


def test_a_key_or_token_read_from_a_file_loses_its_line_break():
    """A secret mounted from a file ends in a newline: as a Bearer header the key broke every
    request upstream (an illegal header value), and the metrics token never matched."""
    key = loaded_setting("LLAMA_API_KEY", SECRET_KEY="x" * 50, LLAMA_API_KEY="llama-key\n")
    token = loaded_setting("METRICS_TOKEN", SECRET_KEY="x" * 50, METRICS_TOKEN=" scrape\r\n")
    assert (key, token) == ("llama-key", "scrape")


def test_earlier_secret_keys_are_a_comma_separated_list():
    base = {"SECRET_KEY": "x" * 50}
    assert loaded_setting("SECRET_KEY_FALLBACKS", **base) == []
    fallbacks = loaded_setting(
        "SECRET_KEY_FALLBACKS", **base, SECRET_KEY_FALLBACKS=" old-1, old-2,"
    )
    assert fallbacks == ["old-1", "old-2"]


def test_values_that_worked_keep_working():
    base = {"SECRET_KEY": "x" * 50}
    # Any text is a key (HKDF derives the cipher's key from it), kept exactly as given.
    key = " a short key, with spaces and ünïcode "
    assert loaded_setting("FIELD_ENCRYPTION_KEY", **base, FIELD_ENCRYPTION_KEY=key) == key
    s3 = {**base, "UPLOADS_S3_BUCKET": "chat-files"}
    for url in ("http://minio:9000", " https://s3.eu-west-1.amazonaws.com ", ""):
        uploads = loaded_setting("UPLOADS_STORAGE", **s3, UPLOADS_S3_ENDPOINT_URL=url)
        assert uploads["OPTIONS"]["endpoint_url"] == (url.strip() or None)
    models = loaded_setting("LLAMA_IMAGE_MODELS", **base, LLAMA_IMAGE_MODELS="llava:13b, ,m/v1")
    assert models == ["llava:13b", "m/v1"]
    assert loaded_setting("LLAMA_IMAGE_MODELS", **base, LLAMA_IMAGE_MODELS="") == []


def test_operators_give_model_context_windows():
    base = {"SECRET_KEY": "x" * 50}
    windows = " qwen2.5:32b = 32768, ,Llama-3.3-8B-Instruct=131_072,"
    assert loaded_setting("LLAMA_MODEL_CONTEXT", **base, LLAMA_MODEL_CONTEXT=windows) == {
        "qwen2.5:32b": 32768,
        "Llama-3.3-8B-Instruct": 131072,
    }
    assert loaded_setting("LLAMA_MODEL_CONTEXT", **base) == {}


def test_operators_give_the_models_the_site_offers():
    base = {"SECRET_KEY": "x" * 50}
    models = loaded_setting("LLAMA_MODELS", **base, LLAMA_MODELS=" qwen2.5:32b, ,meta-llama/x,")
    assert models == ["qwen2.5:32b", "meta-llama/x"]
    llama_api = [
        "Llama-4-Maverick-17B-128E-Instruct-FP8",
        "Llama-4-Scout-17B-16E-Instruct-FP8",
        "Llama-3.3-70B-Instruct",
        "Llama-3.3-8B-Instruct",
    ]
    assert loaded_setting("LLAMA_MODELS", **base) == llama_api
    # Empty is unset: compose passes the variable on either way.
    assert loaded_setting("LLAMA_MODELS", **base, LLAMA_MODELS="") == llama_api
