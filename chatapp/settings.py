"""Settings for Llama team chat, read from the environment (or a .env file) via django-environ."""

import importlib.util
import ipaddress
import math
import secrets
import warnings
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from django.utils.http import is_same_domain
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatapp.core.group_map import parse_group_map
from chatapp.core.logs import logging_config
from chatapp.core.text import NOT_ONE_LINE
from chatapp.llm.limits import KNOWN_MODELS

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
    kind = "a whole number" if cast is int else "a number"
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind} (got {raw!r})") from None
    if not math.isfinite(value):  # nan passes every comparison below
        raise ImproperlyConfigured(f"{name} must be a finite number (got {raw!r})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            allowed = f"at least {minimum}"
        elif minimum is None:
            allowed = f"at most {maximum}"
        else:
            allowed = f"between {minimum} and {maximum}"
        raise ImproperlyConfigured(f"{name} must be {allowed} (got {value})")
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
    if scheme == "unix":
        return value
    try:
        parts = urlsplit(value)
        _port = parts.port  # raises for ":abc" or ":99999"
    except ValueError:
        parts = None
    if parts is None or (scheme in ("http", "https") and not parts.hostname):
        raise ImproperlyConfigured(
            f"{name} must name a host, and any port as a number up to 65535:"
            f" {scheme}://host[:port]/path"
        )
    return value


def is_model_id(value: str) -> bool:
    """Printable, without spaces: what team policies take as a model id."""
    return value.isprintable() and not any(c.isspace() for c in value)


def env_model(name: str, default: str) -> str:
    """A model id: not empty, at most 200 characters (what a conversation stores), without
    spaces or control characters (as team policies take)."""
    value = env.str(name, default=default).strip()
    if not value or not is_model_id(value) or len(value) > 200:
        raise ImproperlyConfigured(
            f"{name} must be a model id of at most 200 characters, without spaces or control"
            f" characters, such as {default}"
        )
    return value


def env_models(name: str, default: tuple[str, ...]) -> list[str]:
    """Comma-separated model ids, each once; empty is unset (compose passes it on either way)."""
    models: list[str] = []
    for model in filter(None, (item.strip() for item in env.list(name, default=[]))):
        # Longer than a conversation's model field: every chat on it would fail to save.
        if not is_model_id(model) or len(model) > 200:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated model ids of at most 200 characters, without"
                f" spaces or control characters, such as qwen2.5:32b,llama3.1:8b (got {model!r})"
            )
        if model in models:
            raise ImproperlyConfigured(f"{name} names {model} twice")
        models.append(model)
    return models or list(default)


def env_model_windows(name: str, minimum: int, maximum: int) -> dict[str, int]:
    """Comma-separated model=tokens pairs: the context window of each model id."""
    windows: dict[str, int] = {}
    for item in filter(str.strip, env.list(name, default=[])):
        model, _, tokens = (part.strip() for part in item.partition("="))
        if not model or not tokens or not is_model_id(model):
            raise ImproperlyConfigured(
                f"{name} must be comma-separated model=tokens pairs, model ids without spaces or"
                f" control characters, such as qwen2.5:32b=32768,my-model=131072 (got {item!r})"
            )
        try:
            window = int(tokens)
        except ValueError:
            window = 0
        if not minimum <= window <= maximum:
            raise ImproperlyConfigured(
                f"{name} gives {model} a window of {tokens!r}: it must be a whole number of"
                f" tokens between {minimum} and {maximum}"
            )
        if model in windows:
            raise ImproperlyConfigured(f"{name} gives {model} a window twice")
        windows[model] = window
    return windows


def env_folder(name: str, default: Path) -> Path:
    """A folder; blank would be Path(""), the working directory, which nobody means."""
    value = env.str(name, default=str(default)).strip()
    if not value:
        raise ImproperlyConfigured(f"{name} must be a folder path, such as {default} (got '')")
    return Path(value)


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
# Earlier SECRET_KEYs while rotating it, comma-separated: sessions, password reset links and
# team provider keys made with one still work. Remove them after `manage.py reencrypt_secrets`.
SECRET_KEY_FALLBACKS = [
    k.strip() for k in env.list("SECRET_KEY_FALLBACKS", default=[]) if k.strip()
]

ALLOWED_HOSTS = [h.strip() for h in env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])]
if not ALLOWED_HOSTS or any(not h for h in ALLOWED_HOSTS):
    raise ImproperlyConfigured("ALLOWED_HOSTS must be a comma-separated list of host names")
for _host in ALLOWED_HOSTS:  # Django compares the Host header's name alone: no scheme, no port
    if "/" in _host or (":" in _host and not (_host.startswith("[") and _host.endswith("]"))):
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must list host names without scheme or port, such as chat.example.com,"
            f" .example.com (and its subdomains) or [::1] (got {_host!r})"
        )
if "*" in ALLOWED_HOSTS and not DEBUG:  # it would also let any site open websockets to this one
    raise ImproperlyConfigured("ALLOWED_HOSTS must list host names, not '*', when DEBUG is off")

# Other origins whose pages may post forms and open the chat websocket (scheme://host[:port],
# `https://*.example.com` for subdomains); the site's own origin never needs listing.
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env.list("CSRF_TRUSTED_ORIGINS", default=[])]
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")) or _origin.count("/") != 2:
        raise ImproperlyConfigured(
            "CSRF_TRUSTED_ORIGINS must list origins like https://chat.example.com"
            f" (got {_origin!r})"
        )

# The address people open (scheme://host[:port]): every link the app mails or shows for copying
# starts with it, never with a Host a request named. Unset: the request's scheme and Host.
SITE_URL = env.str("SITE_URL", default="").strip().rstrip("/")
if SITE_URL:
    try:
        _site = urlsplit(SITE_URL)
        _site_port = _site.port  # raises for ":abc" or ":99999"
    except ValueError:
        _site = None
    if (
        _site is None
        or _site.scheme not in ("http", "https")
        or not _site.hostname
        or "@" in _site.netloc
        or _site.path
        or _site.query
        or _site.fragment
    ):
        raise ImproperlyConfigured(
            "SITE_URL must be the address people open, scheme and host (and any port) only,"
            f" such as https://chat.example.com (got {SITE_URL!r})"
        )
    _site_host = f"[{_site.hostname}]" if ":" in _site.hostname else _site.hostname
    if not any(p == "*" or is_same_domain(_site_host, p) for p in ALLOWED_HOSTS):
        raise ImproperlyConfigured(
            f"SITE_URL names {_site_host}, which ALLOWED_HOSTS does not list: add it there"
        )

INSTALLED_APPS = [
    "daphne",
    "chatapp.core.admin_site.SiteAdminConfig",  # django.contrib.admin, refusing odd input
    # Before django.contrib.auth: its createsuperuser command is the one manage.py runs.
    "chatapp.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "chatapp.core",
    "chatapp.teams",
    "chatapp.uploads",
    "chatapp.tools",
    "chatapp.chat",
    "chatapp.identity",
    "chatapp.llm",
]
# The Llama API simulator is a development tool outside the product; where it is installed
# (a checkout with the `demo` extra) its app brings the `llama_simulator` command.
if all(importlib.util.find_spec(name) for name in ("llama_simulator", "uvicorn")):
    INSTALLED_APPS.append("llama_simulator")
if DEBUG:
    INSTALLED_APPS.append("ninja")  # the assets of the API's docs page, /api/docs (DEBUG only)

MIDDLEWARE = [
    "chatapp.core.middleware.RequestIdMiddleware",
    "chatapp.core.middleware.ProbeMiddleware",
    # Outside everything that answers on its own (static files, a refused Host): every page.
    "chatapp.core.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "chatapp.core.middleware.NeverCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chatapp.accounts.sockets.CurrentSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
                "chatapp.teams.context_processors.current_team",
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", default="")  # kept so that logging redacts it
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
# Kept open on both engines by the websockets' database thread: opening a connection per query
# sat in front of the first token. HTTP requests close theirs as they end (chatapp.core.http).
DATABASES["default"]["CONN_MAX_AGE"] = env_number("DB_CONN_MAX_AGE", 60, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# How the channel layer talks to Redis (redis-py connection options).
REDIS_LAYER_OPTIONS = {
    # redis-py 8 times reads out after 5 s by default, which kills the layer's blocking
    # receive on an idle socket; the server-side timeout bounds it.
    "socket_timeout": None,
    # Its pools refuse a 101st connection at once (MaxConnectionsError) where older releases
    # had no cap: hundreds of answers starting together each need one for a moment, and a
    # refusal there loses the answer's frames.
    "max_connections": 2000,
    # After Redis restarts, the pool's connections are dead but look idle: the next command on
    # one fails. Without a retry on a fresh connection, that command (a delta's group_send)
    # is lost for every socket in other processes.
    "retry": Retry(NoBackoff(), 1),
}
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, ("redis", "rediss", "unix"))
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatapp.core.layers.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **REDIS_LAYER_OPTIONS}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "chatapp.core.layers.InMemoryChannelLayer"}}
# Server processes `manage.py serve` starts on one port; more than one needs REDIS_URL. Empty
# is unset (compose passes it on either way; the image then picks one per core).
WEB_CONCURRENCY = (
    env_number("WEB_CONCURRENCY", 1, minimum=1, maximum=256)
    if env.str("WEB_CONCURRENCY", default="")
    else 1
)

# Stripped: a key read from a file (a Kubernetes or Docker secret) often ends in a newline,
# which no HTTP header may carry.
LLAMA_API_KEY = env.str("LLAMA_API_KEY", default="").strip()
LLAMA_API_BASE_URL = env_url(
    "LLAMA_API_BASE_URL", "https://api.llama.com/v1", ("http", "https")
).rstrip("/")
LLAMA_API_PROTOCOL = env_choice("LLAMA_API_PROTOCOL", "llama", ("llama", "openai"))
LLAMA_DEFAULT_MODEL = env_model("LLAMA_DEFAULT_MODEL", "Llama-4-Maverick-17B-128E-Instruct-FP8")
# The models the site's provider offers (LLAMA_DEFAULT_MODEL always is, first): the pickers,
# /api/models/, /v1/models and team allow-lists list these, and requests may name only these.
LLAMA_MODELS = env_models("LLAMA_MODELS", KNOWN_MODELS)
# Context windows in tokens, by model id, beside (or instead of) the known models' 128K: the
# chat trims history to them and /v1 refuses what exceeds them; other models get 8,192.
LLAMA_MODEL_CONTEXT = env_model_windows("LLAMA_MODEL_CONTEXT", 1024, 10_000_000)
# Llama Guard (docs/safety.md): the Guard model an OpenAI-compatible provider serves, and how
# long one screening attempt may take (attempts follow LLAMA_MAX_ATTEMPTS).
LLAMA_GUARD_MODEL = env_model("LLAMA_GUARD_MODEL", "Llama-Guard-4-12B")
LLAMA_GUARD_TIMEOUT = env_number("LLAMA_GUARD_TIMEOUT", 5.0, float, 0.1, 120)
# Set by `make run` when it starts the built-in simulator; the UI shows an "offline demo" banner.
LLAMA_OFFLINE_DEMO = env_bool("LLAMA_OFFLINE_DEMO", False)
# After a new conversation's first answer, ask the model for its title (chatapp.chat.titles).
LLAMA_GENERATE_TITLES = env_bool("LLAMA_GENERATE_TITLES", True)
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
# Encrypts team provider keys at rest; unset: a key derived from SECRET_KEY. Any text works
# (HKDF derives the Fernet key from its UTF-8 bytes), and it is used exactly as given: stripping
# it would change the key and leave stored provider keys unreadable.
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY", default="")
try:
    FIELD_ENCRYPTION_KEY.encode()
except UnicodeEncodeError:  # bytes that are not UTF-8: every key saved or read would be a 500
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEY must be text (UTF-8), such as the output of"
        " `openssl rand -base64 32` (got bytes that are not UTF-8)"
    ) from None
# Unset: invitations are shared as links; set (smtp+tls://user:pass@host:587): also emailed.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    try:
        vars().update(env.email_url("EMAIL_URL"))
    except Exception as exc:  # django-environ raises several types for a malformed URL
        raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {exc}") from None
# Seconds to wait on the mail server: Django's default waits forever, holding the page.
EMAIL_TIMEOUT = env_number("EMAIL_TIMEOUT", 10, cast=float, minimum=0.1)
# Checked now: Django's SMTP backend would refuse a bad one as each mail went out.
DEFAULT_FROM_EMAIL = (
    env.str("DEFAULT_FROM_EMAIL", default="").strip() or "llama-team-chat@localhost"
)
try:
    ((_sender_name, _sender_address),) = getaddresses([DEFAULT_FROM_EMAIL])
    validate_email(_sender_address)
    if NOT_ONE_LINE.search(DEFAULT_FROM_EMAIL):
        raise ValidationError("line break")
except (ValueError, ValidationError):
    raise ImproperlyConfigured(
        "DEFAULT_FROM_EMAIL must be one address, alone or with a name:"
        f" chat@example.com or Llama team chat <chat@example.com> (got {DEFAULT_FROM_EMAIL!r})"
    ) from None

# Chat limits.
CHAT_MAX_CONTENT_BYTES = env_number("CHAT_MAX_CONTENT_BYTES", 32 * 1024, minimum=1)
CHAT_MAX_CONCURRENT_GENERATIONS = env_number("CHAT_MAX_CONCURRENT_GENERATIONS", 3, minimum=1)
CHAT_WS_MESSAGES_PER_MINUTE = env_number("CHAT_WS_MESSAGES_PER_MINUTE", 60, minimum=1)
# How many of each one team may keep: each is listed on the team's pages, and the prompts and
# schemas on every chat page load; the tools of every server are gathered for each answer.
TEAM_MAX_SYSTEM_PROMPTS = env_number("TEAM_MAX_SYSTEM_PROMPTS", 100, minimum=1)
TEAM_MAX_TOOL_SERVERS = env_number("TEAM_MAX_TOOL_SERVERS", 20, minimum=1)
TEAM_MAX_JSON_SCHEMAS = env_number("TEAM_MAX_JSON_SCHEMAS", 100, minimum=1)
# Pending invitations (not used, not expired) are listed on the members page, 50 a page.
TEAM_MAX_PENDING_INVITATIONS = env_number("TEAM_MAX_PENDING_INVITATIONS", 500, minimum=1)
# Chat sockets one user may hold open in one server process; each holds memory here.
CHAT_MAX_SOCKETS_PER_USER = 50
# How long a temporary chat whose last socket closed waits for its page to reconnect before it
# is deleted: past the chat page's reconnect backoff (0.5 s doubling to 15 s) for a short drop.
CHAT_TEMPORARY_GRACE_SECONDS = 60
# A streaming answer whose heartbeat is older than this belongs to a process that died. It must
# outlast the quietest stretch of a live answer that is retrying: a first-token wait, then the
# longest retry wait the client honours (a retry notice refreshes the heartbeat).
LLAMA_RETRY_WAIT_CAP_SECONDS = 60  # chatapp.llm.errors.RETRY_AFTER_CAP
_quiet = LLAMA_TIMEOUTS["first_token_timeout"]
if LLAMA_MAX_ATTEMPTS > 1:
    _quiet += LLAMA_RETRY_WAIT_CAP_SECONDS
# At most a day: the reaper subtracts it from now, which a much larger value cannot do.
CHAT_STALE_GENERATION_SECONDS = env_number(
    "CHAT_STALE_GENERATION_SECONDS", max(60, int(_quiet) + 30), minimum=15, maximum=86_400
)
if CHAT_STALE_GENERATION_SECONDS <= _quiet:
    raise ImproperlyConfigured(
        f"CHAT_STALE_GENERATION_SECONDS must be more than {_quiet:g} (LLAMA_FIRST_TOKEN_TIMEOUT"
        " plus the longest retry wait when LLAMA_MAX_ATTEMPTS > 1), or retrying answers would"
        f" be marked interrupted (got {CHAT_STALE_GENERATION_SECONDS})"
    )
# How often each server process looks for such answers; 0 turns the periodic check off.
CHAT_REAPER_INTERVAL_SECONDS = env_number("CHAT_REAPER_INTERVAL_SECONDS", 60, minimum=0)

# Who may create an account; the very first account can always be created.
SIGNUP_POLICY = env_choice(
    "SIGNUP_POLICY", "open" if DEBUG else "invite_only", ("open", "invite_only", "domain")
)
SIGNUP_ALLOWED_DOMAINS = [
    d.strip().lower().lstrip("@") for d in env.list("SIGNUP_ALLOWED_DOMAINS", default=[])
]
if SIGNUP_POLICY == "domain" and not all(SIGNUP_ALLOWED_DOMAINS or [""]):
    raise ImproperlyConfigured(
        "SIGNUP_ALLOWED_DOMAINS must list e-mail domains (example.com,example.org)"
        " when SIGNUP_POLICY is domain"
    )
# Monthly token budget a new personal team starts with (its owner may change it); unset: none.
_budget = env.str("PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET", default="").strip()
PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET = (
    # The policy page's own range; a larger number does not fit the budget's column.
    env_number("PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET", 1, minimum=1, maximum=10**15)
    if _budget
    else None
)

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
# At most a year: django-axes subtracts it from the time of each failed login.
AXES_COOLOFF_TIME = timedelta(
    minutes=env_number("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=525_600)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are what matter; successes would only pile up
AXES_LOCKOUT_CALLABLE = "chatapp.accounts.views.login_locked_out"
AXES_USERNAME_CALLABLE = "chatapp.accounts.views.throttled_username"
# Its log lines name the path as the access line does: without a credential in it.
AXES_CLIENT_STR_CALLABLE = "chatapp.accounts.views.throttled_client"
AXES_VERBOSE = False  # no start-up banner; failures and lockouts are still logged
AXES_WHITELIST_CALLABLE = "chatapp.identity.backends.is_provider_callback"

# Sign-in with an OpenID Connect provider (mozilla-django-oidc; see docs/identity.md).
# Local passwords off: no signup and no password login; createsuperuser still works, and the
# account it makes is linked at its first sign-in through the provider's verified e-mail.
LOCAL_PASSWORDS = env_bool("LOCAL_PASSWORDS", True)
OIDC_ISSUER_URL = env.str("OIDC_ISSUER_URL", default="").strip().rstrip("/")
OIDC_ENABLED = bool(OIDC_ISSUER_URL)
if OIDC_ENABLED:
    env_url("OIDC_ISSUER_URL", OIDC_ISSUER_URL, ("http", "https"))
# OIDCIdentity.issuer holds 500 characters: the provider's issuer, which may add a final slash.
OIDC_ISSUER_MAX = 499
if len(OIDC_ISSUER_URL) > OIDC_ISSUER_MAX:
    raise ImproperlyConfigured(
        f"OIDC_ISSUER_URL has {len(OIDC_ISSUER_URL)} characters: at most {OIDC_ISSUER_MAX} fit"
        " the sign-in records (without a final slash)"
    )
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
if OIDC_ENABLED and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ImproperlyConfigured("OIDC_ISSUER_URL is set: set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET")
if not LOCAL_PASSWORDS and not OIDC_ENABLED:
    raise ImproperlyConfigured("LOCAL_PASSWORDS is off: set OIDC_ISSUER_URL so people can sign in")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile").strip()
if "openid" not in OIDC_RP_SCOPES.split():
    raise ImproperlyConfigured("OIDC_SCOPES must include openid")
OIDC_RP_SIGN_ALGO = env_choice(
    "OIDC_SIGN_ALGO", "RS256", ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
)
OIDC_BUTTON_LABEL = env.str("OIDC_BUTTON_LABEL", default="Sign in with single sign-on")
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_GROUP_MAP = env.str("OIDC_GROUP_MAP", default="")
try:
    parse_group_map(OIDC_GROUP_MAP)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = env_number("OIDC_TIMEOUT", 10.0, float, 0.5, 120)
OIDC_OP_LOGOUT_URL_METHOD = "chatapp.identity.oidc.end_session_url"
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("chatapp.identity.backends.OIDCBackend")
if not LOCAL_PASSWORDS:
    AUTHENTICATION_BACKENDS = ["chatapp.identity.backends.OIDCBackend"]

# Database sessions, read with one plain statement instead of an ORM query per request.
SESSION_ENGINE = "chatapp.core.sessions"
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
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip()  # as LLAMA_API_KEY
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_folder("STATIC_ROOT", BASE_DIR / "staticfiles")
# Hashed, compressed names in production (collectstatic at build time); plain files while
# developing and testing, served straight from static/ by WhiteNoise's finders.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:
    # Collected files come compressed (the manifest storage); files served from static/ are
    # compressed on the way out. Before WhiteNoise, so it wraps WhiteNoise's responses.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware"),
        "chatapp.core.middleware.StaticGZipMiddleware",
    )
if not STATIC_MANIFEST:  # nothing is collected into STATIC_ROOT in that mode
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")

# Uploaded images and documents. Never served from a public URL: only through the
# access-checked /api/uploads/<id>/, so there is no MEDIA_URL.
MEDIA_ROOT = env_folder("MEDIA_ROOT", BASE_DIR / "media")
UPLOADS_S3_BUCKET = env.str("UPLOADS_S3_BUCKET", default="")
UPLOADS_S3_SECRET_ACCESS_KEY = env.str("UPLOADS_S3_SECRET_ACCESS_KEY", default="")  # redacted
if UPLOADS_S3_BUCKET:
    # S3 or any S3-compatible store (MinIO, R2...): needs the `s3` extra (django-storages).
    if importlib.util.find_spec("storages") is None:
        raise ImproperlyConfigured(
            "UPLOADS_S3_BUCKET needs django-storages: pip install 'llama-team-chat[s3]'"
        )
    # boto3 refuses an endpoint without http(s):// only at the first upload (a 500 there).
    UPLOADS_S3_ENDPOINT_URL = env.str("UPLOADS_S3_ENDPOINT_URL", default="").strip()
    if UPLOADS_S3_ENDPOINT_URL:
        env_url("UPLOADS_S3_ENDPOINT_URL", "", ("http", "https"))
    UPLOADS_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": UPLOADS_S3_BUCKET,
            "endpoint_url": UPLOADS_S3_ENDPOINT_URL or None,
            "region_name": env.str("UPLOADS_S3_REGION", default="") or None,
            "access_key": env.str("UPLOADS_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": UPLOADS_S3_SECRET_ACCESS_KEY or None,
            "location": env.str("UPLOADS_S3_PREFIX", default=""),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    # The bucket's other settings without it: files would go to the local disk unnoticed.
    s3_settings = ("ENDPOINT_URL", "REGION", "PREFIX", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY")
    if given := [f"UPLOADS_S3_{n}" for n in s3_settings if env.str(f"UPLOADS_S3_{n}", default="")]:
        raise ImproperlyConfigured(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but"
            " UPLOADS_S3_BUCKET is not: set the bucket to store files there, or unset"
            f" {'it' if len(given) == 1 else 'them'} to keep files on this disk (MEDIA_ROOT)"
        )
    UPLOADS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "file_permissions_mode": 0o600},
    }
UPLOAD_MAX_FILE_BYTES = env_number("UPLOAD_MAX_FILE_BYTES", 10 * 1024 * 1024, minimum=1)
UPLOAD_MAX_FILES_PER_MESSAGE = env_number("UPLOAD_MAX_FILES_PER_MESSAGE", 5, minimum=1)
UPLOAD_MAX_MESSAGE_BYTES = env_number("UPLOAD_MAX_MESSAGE_BYTES", 30 * 1024 * 1024, minimum=1)
# Decoding an image with more pixels than this is refused (decompression bombs).
UPLOAD_MAX_IMAGE_PIXELS = env_number("UPLOAD_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
# Larger images are scaled down so their longer side is at most this many pixels.
UPLOAD_IMAGE_MAX_SIDE = env_number("UPLOAD_IMAGE_MAX_SIDE", 2048, minimum=64)
# Images of earlier turns sent again with a question, newest first, at most this many.
UPLOAD_CONTEXT_MAX_IMAGES = env_number("UPLOAD_CONTEXT_MAX_IMAGES", 8, minimum=1)
# Uploads never attached to a message are deleted after this many hours (at most a year).
UPLOAD_UNATTACHED_HOURS = env_number("UPLOAD_UNATTACHED_HOURS", 24, float, 0.01, 8_760)
# Uploads one person may hold without sending them: the quota counts bytes, not files.
UPLOAD_MAX_UNSENT_FILES = env_number("UPLOAD_MAX_UNSENT_FILES", 50, minimum=1)
# Bytes of uploads a team may keep; 0 means no limit.
UPLOAD_TEAM_QUOTA_BYTES = env_number("UPLOAD_TEAM_QUOTA_BYTES", 1024**3, minimum=0)
# Models that understand images; the model list does not say, so the site keeps the list.
# A Guard model on it (LLAMA_GUARD_MODEL) is shown the images of the questions it screens.
LLAMA_IMAGE_MODELS = [
    name.strip()
    for name in env.list(
        "LLAMA_IMAGE_MODELS",
        default=[
            "Llama-4-Maverick-17B-128E-Instruct-FP8",
            "Llama-4-Scout-17B-16E-Instruct-FP8",
            "Llama-Guard-4-12B",
        ],
    )
    if name.strip()
]
for _model in LLAMA_IMAGE_MODELS:  # such an id never equals a model's, so it never sees images
    if not is_model_id(_model):
        raise ImproperlyConfigured(
            "LLAMA_IMAGE_MODELS must be comma-separated model ids without spaces or control"
            f" characters, such as Llama-4-Scout-17B-16E-Instruct-FP8,llava:13b (got {_model!r})"
        )

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "uploads": UPLOADS_STORAGE,
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
