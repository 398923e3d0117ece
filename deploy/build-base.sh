#!/usr/bin/env bash
# Builds the image's base from Debian's packages, for machines that cannot
# pull from a container registry: a minimal Debian bookworm root file system
# (debootstrap) with Python 3.11 and venv, imported as $BASE_IMAGE.
# Where a registry is reachable, skip this and build on python:3.11-slim
# (deploy/build-image.sh --base python:3.11-slim-bookworm).
#
# Usage: deploy/build-base.sh [IMAGE]   (default agentp2p-base:bookworm; needs root)
set -euo pipefail
image="${1:-agentp2p-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "== base image $image exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
# minbase: dpkg, apt, coreutils, passwd (useradd) and little else; ~100 MB
# with Python once the package caches are gone.
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "== base image $image built from $mirror"
