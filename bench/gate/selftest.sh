#!/usr/bin/env bash
# CTest bench_compare_selftest (label bench): bench/compare on made-up runs against the stored
# baseline. The gate must pass a run at the baseline, fail a run where one throughput ratio fell
# by more than the tolerance, fail one where a latency ratio grew by more than it, and fail a
# run with a ratio missing (a skipped peer). No root, no network: seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
baseline="${here}/baseline.json"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# run NAME JQ-FILTER: a suite.json whose ratios are the baseline's, changed by the filter.
run() {
  mkdir -p "${work}/$1"
  jq "{ratios: (.ratios | $2), machine: {loadavg_start: \"made up\"}}" "${baseline}" >"${work}/$1/suite.json"
}
expect() {
  local want="$1" name="$2" got=0
  "${here}/../compare" "${work}/${name}" --baseline "${baseline}" >"${work}/${name}.out" 2>&1 || got=$?
  if [[ "${got}" -ne "${want}" ]]; then
    cat "${work}/${name}.out"
    echo "selftest: ${name}: exit ${got}, expected ${want}"
    exit 1
  fi
  echo "selftest: ${name}: exit ${got} as expected"
}
tol="$(jq .tolerance "${baseline}")"
run at_baseline '.'
run throughput_fell ".\"saturation.xdp/baseline\" *= (1 - ${tol} - 0.05)"
run throughput_within ".\"saturation.xdp/baseline\" *= (1 - ${tol} + 0.05)"
run latency_grew ".\"fixed_p50.xdp/baseline\" /= (1 - ${tol} - 0.05)"
run missing 'del(."saturation.xdp/reflector")'
expect 0 at_baseline
expect 1 throughput_fell
expect 0 throughput_within
expect 1 latency_grew
expect 1 missing
echo "selftest: ok"
