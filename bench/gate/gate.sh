#!/usr/bin/env bash
# The benchmark regression gate (CTest bench_gate, label bench): runs the short suite
# (bench/run.sh --short: reflector, axon over XDP and the baseline, one overload step and one
# fixed-rate step each, about a minute) and checks its ratios with bench/compare against
# bench/gate/baseline.json, whose tolerance was chosen from the noise of repeated runs.
#
#   bench/gate/gate.sh BUILD_DIR [OUT_DIR]
#
# Exit: 0 ok, 1 a ratio fell (or a peer could not run), 77 skipped (not root: the suite needs
# network namespaces, veth pairs and XDP).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: gate.sh BUILD_DIR [OUT_DIR]}"
out="${2:-${build}/bench/gate-run}"
if [[ ${EUID} -ne 0 ]]; then
  echo "bench gate: skipped, needs root (network namespace, veth, XDP)"
  exit 77
fi
rm -rf "${out}"
# Bounded: the short suite takes about a minute; anything near the limit is a hang.
timeout --kill-after=10 150 "${here}/../run.sh" --short --build "${build}" --out "${out}"
sed -n '1,/^### Ratios/p' "${out}/summary.md" | head -n 40
exec "${here}/../compare" "${out}"
