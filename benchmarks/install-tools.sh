#!/usr/bin/env bash
# Tools the benchmark suite runs besides the Python packages of `make dev`: wrk (HTTP load)
# and h2load (gRPC load, Debian's nghttp2-client), from the distribution's packages.
set -euo pipefail

missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v h2load >/dev/null 2>&1 || missing="$missing nghttp2-client"
if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing:$missing, and there is no apt-get here: install them by hand" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
# shellcheck disable=SC2086
$sudo apt-get install -y $missing || { $sudo apt-get update && $sudo apt-get install -y $missing; }
command -v wrk >/dev/null && command -v h2load >/dev/null
