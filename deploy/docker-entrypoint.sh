#!/bin/sh
# The image's entry point. `serve` (the default) starts daphne on $PORT (WEB_CONCURRENCY
# processes; one per core by default with Redis), first applying
# migrations when MIGRATE_ON_START is on; any other command runs as given, for example
# `python manage.py export_conversations --all`.
set -eu

is_on() {
  case "$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on) return 0 ;;
    0 | false | no | off | "") return 1 ;;
    *) echo "$1 must be one of 1/0, true/false, yes/no, on/off (got '$2')" >&2; exit 64 ;;
  esac
}

if [ "${1:-serve}" != "serve" ]; then
  exec "$@"
fi

if is_on MIGRATE_ON_START "${MIGRATE_ON_START:-0}"; then
  # stdout carries only JSON log lines; the migration report goes to stderr.
  python manage.py migrate_locked >&2
fi

# WEB_CONCURRENCY daphne processes share the port (manage.py serve supervises them). Unset, the
# image runs one per core when Redis carries the channel layer, else one.
set --
if [ -z "${WEB_CONCURRENCY:-}" ]; then
  unset WEB_CONCURRENCY
  if [ -n "${REDIS_URL:-}" ]; then
    set -- --processes auto
  fi
fi
# Verbosity 0: no plain-text access log; the app writes JSON access lines with request ids.
# stdout carries only JSON log lines; the supervisor's own lines go to stderr.
set -- python manage.py serve --bind 0.0.0.0 --port "${PORT:-8000}" --verbosity-daphne 0 "$@"
# Client address and scheme from the reverse proxy's X-Forwarded-* headers; turn off when
# clients reach daphne directly, or they could claim any address.
if is_on PROXY_HEADERS "${PROXY_HEADERS:-1}"; then
  set -- "$@" --proxy-headers
fi
exec "$@"
