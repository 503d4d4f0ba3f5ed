#!/usr/bin/env bash
# CTest bench_compare_selftest (label bench): bench/compare on made-up runs against the stored
# baseline. The gate must pass a run at the baseline, fail a run where one throughput ratio fell
# by more than the tolerance, fail one where a latency ratio grew by more than it, fail a run
# with a ratio missing (a skipped peer), and call a run inconclusive (2) whose only doubtful ratio
# rests on a step where the load side fell behind, but still fail it when another ratio fell.
# No root, no network: seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
baseline="${here}/baseline.json"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# run NAME JQ-FILTER [UNJUDGEABLE-JSON]: a suite.json whose ratios are the baseline's, changed by
# the filter, with the given "unjudgeable" map (default none).
run() {
  mkdir -p "${work}/$1"
  jq --argjson unjudgeable "${3:-{\}}" \
    "{ratios: (.ratios | $2), unjudgeable: \$unjudgeable, machine: {loadavg_start: \"made up\"}}" \
    "${baseline}" >"${work}/$1/suite.json"
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
behind='{"saturation.xdp/reflector": "xdp'"'"'s last load step: the load side fell behind (made up)"}'
run behind_only 'del(."saturation.xdp/reflector")' "${behind}"
run behind_and_fell ".\"fixed_p50.xdp/baseline\" /= (1 - ${tol} - 0.05)" "${behind}"
expect 0 at_baseline
expect 1 throughput_fell
expect 0 throughput_within
expect 1 latency_grew
expect 1 missing
expect 2 behind_only
expect 1 behind_and_fell
# A real short run (2026-12-06, quiet machine) in which the host stalled the load side during
# axon's overload step (send lag p90 18.8 ms): the gate failed it as "saturation.xdp/reflector
# fell 51%" before bench/report.py marked such ratios unjudgeable; now it is inconclusive.
mkdir -p "${work}/recorded_behind"
cp "${here}/testdata/load-behind-run.raw.json" "${work}/recorded_behind/raw.json"
python3 "${here}/../report.py" "${work}/recorded_behind" >/dev/null
expect 2 recorded_behind
echo "selftest: ok"
