#!/usr/bin/env bash
# The images the app's Dockerfile and docker-compose.yml start from: the official ones when the
# registry answers, otherwise stand-ins built here from Debian bookworm's packages (a
# debootstrapped root filesystem, then deploy/standins/Dockerfile). The root filesystem is
# built once and kept as an image; the stand-ins are rebuilt from Docker's layer cache, so an
# edit to their Dockerfile takes effect and an unchanged one costs seconds.
#
# Prints the choice as NAME=image lines, for `export $(deploy/base-images.sh)` before
# `docker build --build-arg BASE_IMAGE="$PYTHON_IMAGE"` and `docker compose`. Needs root for
# debootstrap the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

STANDIN=llama-team-chat-standin
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# NAME official-image stand-in-stage, as docker-compose.yml and the Dockerfile default them.
IMAGES=(
  "PYTHON_IMAGE python:3.11.13-slim-bookworm python"
  "POSTGRES_IMAGE postgres:16.6-bookworm postgres"
  "REDIS_IMAGE redis:7.4.2-bookworm redis"
  "NGINX_IMAGE nginx:1.27.3-alpine nginx"
)

log() { echo "base-images: $*" >&2; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

pullable() { have "$1" || timeout 120 docker pull -q "$1" >/dev/null 2>&1; }

# Debian bookworm, minbase, with the machine's CA bundle so pip and apt work behind a TLS proxy.
debian_rootfs() {
  local image="$STANDIN/debian:bookworm"
  have "$image" && return
  local root
  root=$(mktemp -d)
  log "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR" >&2
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["bash"]' - "$image" >/dev/null
  rm -rf "$root"
  log "imported $image"
}

standin() {
  local stage=$1 image="$STANDIN/$1:bookworm"
  debian_rootfs
  log "building $image"
  docker build -q -f deploy/standins/Dockerfile --target "$stage" \
    --build-arg DEBIAN_IMAGE="$STANDIN/debian:bookworm" -t "$image" . >/dev/null
  echo "$image"
}

for entry in "${IMAGES[@]}"; do
  read -r name official stage <<<"$entry"
  if pullable "$official"; then
    echo "$name=$official"
  else
    log "$official can't be pulled; using a stand-in"
    echo "$name=$(standin "$stage")"
  fi
done
