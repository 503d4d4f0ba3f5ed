#!/usr/bin/env bash
# The benchmark regression gate (CTest bench_gate, label bench): runs the short suite
# (bench/run.sh --short: reflector, axon over XDP and the baseline, one overload step and one
# fixed-rate step each, about a minute) and checks its ratios with bench/compare against
# bench/gate/baseline.json, whose tolerance was chosen from the noise of repeated runs.
#
#   bench/gate/gate.sh BUILD_DIR [OUT_DIR]
#
# A run that does not pass (a ratio fell, or some could not be judged because the load side fell
# behind) gets one second run: the host stalls this VM's vCPUs for tens of ms now and then, and
# one stall in the wrong step decides a single run. The gate then follows the second run, except
# that a fall in the first is not cleared by a second run that could not judge it.
#
# Exit: 0 ok, 1 a ratio fell (or a peer could not run), 77 skipped (not root: the suite needs
# network namespaces, veth pairs and XDP; or the load side fell behind in both runs, so this
# machine could not measure the ratios now: the output says which).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: gate.sh BUILD_DIR [OUT_DIR]}"
out="${2:-${build}/bench/gate-run}"
if [[ ${EUID} -ne 0 ]]; then
  echo "bench gate: skipped, needs root (network namespace, veth, XDP)"
  exit 77
fi

# one_run DIR: the short suite into DIR, then bench/compare; returns compare's status
# (0 ok, 1 fell, 2 not judged).
one_run() {
  local dir="$1" status=0
  rm -rf "${dir}"
  # Bounded: the short suite takes about a minute; anything near the limit is a hang.
  timeout --kill-after=10 150 "${here}/../run.sh" --short --build "${build}" --out "${dir}" || return 1
  sed -n '1,/^### Ratios/p' "${dir}/summary.md" | head -n 40
  "${here}/../compare" "${dir}" || status=$?
  return "${status}"
}

first=0
one_run "${out}" || first=$?
((first == 0)) && exit 0
echo "bench gate: the first run did not pass (compare status ${first}); a second run decides"
second=0
one_run "${out}-2" || second=$?
case "${second}" in
  0) echo "bench gate: ok: the second run passed (the first run's result was this VM's noise)"; exit 0 ;;
  2) if ((first == 1)); then
       echo "bench gate: FAILED: the first run fell and the second could not judge it"
       exit 1
     fi
     echo "bench gate: skipped: the load side fell behind in both runs; nothing was judged"
     exit 77 ;;
  *) echo "bench gate: FAILED in both runs"; exit 1 ;;
esac
