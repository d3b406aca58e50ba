#!/usr/bin/env bash
# CI's Docker part (.ci/run calls it): start a Docker engine if none runs, get the base images
# (official or stand-ins, deploy/base-images.sh), build the app and simulator images, then run
# tests/docker against them: the image on its own and the whole compose stack.
#   deploy/docker-ci.sh         build, then test
#   deploy/docker-ci.sh build   the images only (.ci/run builds them while the suites run)
#   deploy/docker-ci.sh test    the tests only, against images already built
# Skips, saying why, only where no Docker engine can be started at all.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "SKIPPED the Docker image and stack tests: $*"
  exit 0
}

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
    || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || skip "${missing[*]} not installed and not root to install them"
    echo "Installing ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      >/dev/null || skip "apt-get could not install ${missing[*]}"
  fi
}

ensure_engine() {
  docker info >/dev/null 2>&1 && return
  [ "$(id -u)" = 0 ] || skip "no Docker engine runs and starting one needs root"
  echo "Starting dockerd (log: /var/log/llama-team-chat-dockerd.log)"
  nohup dockerd >/var/log/llama-team-chat-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  skip "dockerd did not start: $(tail -3 /var/log/llama-team-chat-dockerd.log)"
}

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "   $label: $((SECONDS - start)) s" >&2
}

export APP_IMAGE=llama-team-chat:ci SIMULATOR_IMAGE=llama-team-chat-simulator:ci
# The base images the build chose, for the tests' compose stack.
CHOSEN=${TMPDIR:-/tmp}/llama-team-chat-ci-base-images

build() {
  echo "== base images"
  local images
  images=$(deploy/base-images.sh)
  echo "$images" | sed 's/^/   /'
  echo "$images" >"$CHOSEN"
  export $images

  echo "== building $APP_IMAGE and $SIMULATOR_IMAGE"
  timed "app image" docker build -q --build-arg BASE_IMAGE="$PYTHON_IMAGE" -t "$APP_IMAGE" . \
    >/dev/null
  timed "simulator image" docker build -q --build-arg BASE_IMAGE="$PYTHON_IMAGE" \
    -f deploy/simulator.Dockerfile -t "$SIMULATOR_IMAGE" . >/dev/null
}

run_tests() {
  [ -f "$CHOSEN" ] || { echo "no images built: run $0 build first" >&2 && exit 1; }
  export $(cat "$CHOSEN")
  echo "== the image and the compose stack"
  timed "tests/docker" .venv/bin/python -m pytest --docker -m docker tests/docker \
    -p no:cacheprovider
}

ensure_packages
ensure_engine
case "${1:-all}" in
  build) build ;;
  test) run_tests ;;
  all) build && run_tests ;;
  *) echo "usage: $0 [build|test]" >&2 && exit 2 ;;
esac
