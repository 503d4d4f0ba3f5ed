#!/usr/bin/env bash
# Checks bench/lib/delta.jq, the counter-delta function of bench/mixed and bench/messages, on
# nested objects and arrays: the filter-parameter version it replaced returned nested totals.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
def="$(cat "${here}/delta.jq")"
after='{"top":5,"xdp":{"verdicts":{"pass":10,"busy":7}},"workers":[{"completed":9},{"completed":4}],"name":"w"}'
before='{"top":2,"xdp":{"verdicts":{"pass":4,"busy":7}},"workers":[{"completed":3}],"name":"w"}'
want='{"top":3,"xdp":{"verdicts":{"pass":6,"busy":0}},"workers":[{"completed":6},{"completed":4}],"name":"w"}'
got="$(jq -nc --argjson a "${after}" --argjson b "${before}" "${def} d(\$a; \$b)")"
if [[ "$(jq -S -c . <<<"${got}")" != "$(jq -S -c . <<<"${want}")" ]]; then
  echo "delta.jq: got ${got}, want ${want}" >&2
  exit 1
fi
echo "delta.jq: nested deltas ok"
