#!/usr/bin/env bash
# Profile inferd with py-spy while wrk loads it; flamegraphs and top summaries go to
# benchmarks/out/profile/. Extra arguments go to run.py (e.g. --duration 15).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/install-tools.sh"
exec "$here/../.venv/bin/python" "$here/run.py" --profile "$@"
