#!/usr/bin/env bash
# Tools the benchmark suite runs besides the Python packages of `make dev`:
# wrk (the HTTP load generator), from the distribution's packages.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "wrk is missing and there is no apt-get here: install wrk (https://github.com/wg/wrk)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get install -y wrk || { $sudo apt-get update && $sudo apt-get install -y wrk; }
command -v wrk >/dev/null
