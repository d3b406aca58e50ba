"""Settings for Llama team chat, read from the environment (or a .env file) via django-environ."""

import ipaddress
import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from chatapp.core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Strict boolean: a typo such as DEBUG=ture fails at start-up instead of reading as off."""
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off (got {raw!r})"
    )


def env_number(name: str, default, cast=int, minimum=None, maximum=None):
    raw = env.str(name, default=str(default))
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a {cast.__name__} (got {raw!r})") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)} (got {value!r})")
    return value


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must start with {' or '.join(s + '://' for s in schemes)}"
        )
    return value


def env_networks(name: str) -> list:
    """A comma-separated list of networks such as 10.0.0.0/8,127.0.0.1."""
    try:
        return [ipaddress.ip_network(n.strip()) for n in env.list(name, default=[]) if n.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must list networks like 10.0.0.0/8 ({exc})") from None


def dev_secret_key() -> str:
    """A key generated once per checkout, so dev sessions survive restarts."""
    path = BASE_DIR / ".dev_secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = dev_secret_key()

ALLOWED_HOSTS = [h.strip() for h in env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])]
if not ALLOWED_HOSTS or any(not h for h in ALLOWED_HOSTS):
    raise ImproperlyConfigured("ALLOWED_HOSTS must be a comma-separated list of host names")
if "*" in ALLOWED_HOSTS and not DEBUG:  # it would also let any site open websockets to this one
    raise ImproperlyConfigured("ALLOWED_HOSTS must list host names, not '*', when DEBUG is off")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "chatapp.core",
    "chatapp.accounts",
    "chatapp.teams",
    "chatapp.chat",
    "chatapp.llm",
]

MIDDLEWARE = [
    "chatapp.core.middleware.RequestIdMiddleware",
    "chatapp.core.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatapp.core.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatapp.urls"
ASGI_APPLICATION = "chatapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chatapp.core.context_processors.site",
            ],
        },
    },
]

try:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    }
except Exception as exc:  # django-environ raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"].get("ENGINE") not in (
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
):
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the chat's readers and its single writer work side by side.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database that does not answer fails requests and /healthz instead of hanging them.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
# Kept open on both engines: opening a connection per query sat in front of the first token.
DATABASES["default"]["CONN_MAX_AGE"] = env_number("DB_CONN_MAX_AGE", 60, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, ("redis", "rediss", "unix"))
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 times reads out after 5 s by default, which kills the layer's
                # blocking receive on an idle socket; the server-side timeout bounds it.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LLAMA_API_KEY = env.str("LLAMA_API_KEY", default="")
LLAMA_API_BASE_URL = env_url(
    "LLAMA_API_BASE_URL", "https://api.llama.com/v1", ("http", "https")
).rstrip("/")
LLAMA_API_PROTOCOL = env_choice("LLAMA_API_PROTOCOL", "llama", ("llama", "openai"))
LLAMA_DEFAULT_MODEL = env.str(
    "LLAMA_DEFAULT_MODEL", default="Llama-4-Maverick-17B-128E-Instruct-FP8"
)
# Set by `make run` when it starts the built-in simulator; the UI shows an "offline demo" banner.
LLAMA_OFFLINE_DEMO = env_bool("LLAMA_OFFLINE_DEMO", False)
# Upstream timeouts (seconds) and attempts before the first token, for every provider.
LLAMA_TIMEOUTS = {
    "connect_timeout": env_number("LLAMA_CONNECT_TIMEOUT", 10.0, float, 0.1, 300),
    "first_token_timeout": env_number("LLAMA_FIRST_TOKEN_TIMEOUT", 60.0, float, 0.1, 3600),
    "idle_timeout": env_number("LLAMA_IDLE_TIMEOUT", 30.0, float, 0.1, 3600),
    "total_timeout": env_number("LLAMA_TOTAL_TIMEOUT", 600.0, float, 1, 7200),
}
LLAMA_MAX_ATTEMPTS = env_number("LLAMA_MAX_ATTEMPTS", 3, int, 1, 5)

# Teams. Team-entered provider URLs may reach private addresses (and plain http) only when on.
LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = env_bool("LLAMA_ALLOW_PRIVATE_PROVIDER_URLS", False)
# Encrypts team provider keys at rest; unset: a key derived from SECRET_KEY.
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY", default="")
# Unset: invitations are shared as links; set (smtp+tls://user:pass@host:587): also emailed.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    try:
        vars().update(env.email_url("EMAIL_URL"))
    except Exception as exc:  # django-environ raises several types for a malformed URL
        raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {exc}") from None
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="llama-team-chat@localhost")

# Chat limits.
CHAT_MAX_CONTENT_BYTES = env_number("CHAT_MAX_CONTENT_BYTES", 32 * 1024, minimum=1)
CHAT_MAX_CONCURRENT_GENERATIONS = env_number("CHAT_MAX_CONCURRENT_GENERATIONS", 3, minimum=1)
CHAT_WS_MESSAGES_PER_MINUTE = env_number("CHAT_WS_MESSAGES_PER_MINUTE", 60, minimum=1)
# A streaming answer whose heartbeat is older than this belongs to a process that died.
CHAT_STALE_GENERATION_SECONDS = env_number("CHAT_STALE_GENERATION_SECONDS", 60, minimum=15)
# How often each server process looks for such answers; 0 turns the periodic check off.
CHAT_REAPER_INTERVAL_SECONDS = env_number("CHAT_REAPER_INTERVAL_SECONDS", 60, minimum=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): failed logins are counted in the database, so every server
# process shares the count. A username is locked for the address that guessed wrong.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_number("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_number("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are what matter; successes would only pile up
AXES_LOCKOUT_CALLABLE = "chatapp.accounts.views.login_locked_out"
AXES_VERBOSE = False  # no start-up banner; failures and lockouts are still logged

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# HTTPS. Plain-HTTP requests are redirected unless SECURE_SSL_REDIRECT=0 (the TLS proxy in front
# redirects instead); probes and metrics are answered before the redirect, see ProbeMiddleware.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Only behind a proxy that overwrites X-Forwarded-Proto; otherwise a client could claim HTTPS.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Prometheus /metrics: off (404) until a bearer token and/or client networks are set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Hashed, compressed names in production (collectstatic at build time); plain files while
# developing and testing, served straight from static/ by WhiteNoise's finders.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:  # nothing is collected into STATIC_ROOT in that mode
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "chatapp.core.storage.StaticStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# JSON lines with request ids on stdout in production; LOG_FORMAT=text for humans.
LOGGING = logging_config(
    level=env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    fmt=env_choice("LOG_FORMAT", "text" if DEBUG else "json", ("json", "text")),
)
