#!/usr/bin/env bash
# Builds the agentp2p daemon image from this checkout.
#
# Usage: deploy/build-image.sh [--base IMAGE] [--tag TAG]
#   --base  the Dockerfile's BASE (default: agentp2p-base:bookworm if it
#           exists, made by deploy/build-base.sh, else python:3.11-slim-bookworm)
#   --tag   the image's name (default agentp2p:latest)
# Wheels are built here, with this machine's pip and its trust store, and the
# image installs only them (pip --no-index): nothing is fetched during the build.
set -euo pipefail
cd "$(dirname "$0")/.."
base="" tag="agentp2p:latest"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$base" ]; then
  if docker image inspect agentp2p-base:bookworm >/dev/null 2>&1; then base=agentp2p-base:bookworm
  else base=python:3.11-slim-bookworm; fi
fi
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && python="${PYTHON:-.venv/bin/python}"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
# The image's Python must take these wheels: same minor version as the base's.
"$python" -m pip wheel -q --wheel-dir "$ctx/wheels" . >/dev/null
cp deploy/Dockerfile "$ctx/"
docker build -q --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null
# The legacy builder keeps the build stage as an untagged image; only ours go.
docker image prune -f --filter label=agentp2p.stage=build >/dev/null
echo "== built $tag on $base"
