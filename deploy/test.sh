#!/usr/bin/env bash
# axon's test command: ./deploy/test.sh [--quick]
#
#   1. installs the Debian packages the build needs (quiet when they are all there)
#   2. reserves hugepages (AXON_HUGEPAGES, default 64) and mounts bpffs
#   3. builds preset `release` and runs its whole CTest suite
#   4. builds presets `asan` (ASan+UBSan) and `tsan` and runs the tests labelled
#      shm|dataplane under each -- skipped with --quick
#
# Every stage runs even when an earlier one failed, so one run shows every problem; the
# exit status is non-zero if any stage failed. The last line is the combined count of
# the three CTest runs, "tests: N passed, N failed", for CI to read.
#
# Environment:
#   AXON_HUGEPAGES    2 MiB hugepages to reserve (default 64; never lowers a larger value)
#   AXON_CTEST_ARGS   extra arguments for every ctest call, e.g. "-R shm --repeat until-fail:3"
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
usage: $0 [--quick]
  --quick   build and test the release preset only (skip asan and tsan)
USAGE
}

quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
  shift
done

cd "${AXON_ROOT}"
log_dir="${AXON_ROOT}/build/test-logs"
mkdir -p "${log_dir}"

read -r -a ctest_extra <<<"${AXON_CTEST_ARGS:-}"

run_start="$(axon_now)"
total_passed=0
total_failed=0
failed_stages=()
summary_lines=()

# stage NAME CMD...: runs CMD, prints its duration, records a failure without stopping.
stage() {
  local name="$1"
  shift
  local start
  start="$(axon_now)"
  axon_log "== ${name}"
  if "$@"; then
    axon_log "== ${name}: ok ($(axon_elapsed "${start}"))"
    summary_lines+=("$(printf '%-14s ok      %s' "${name}" "$(axon_elapsed "${start}")")")
    return 0
  fi
  axon_log "== ${name}: FAILED ($(axon_elapsed "${start}"))"
  summary_lines+=("$(printf '%-14s FAILED  %s' "${name}" "$(axon_elapsed "${start}")")")
  failed_stages+=("${name}")
  return 1
}

# run_ctest PRESET: runs `ctest --preset PRESET`, keeps its output in build/test-logs/,
# and adds its "X% tests passed, F tests failed out of M" line to the totals. An empty
# test selection counts as a failure: a sanitizer stage that ran nothing proves nothing.
# shellcheck disable=SC2317  # called through stage()
run_ctest() {
  local preset="$1" log="${log_dir}/ctest-$1.log" status=0
  ctest --preset "${preset}" --no-tests=error "${ctest_extra[@]}" 2>&1 | tee "${log}" || status=$?

  local line
  line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "${log}" | tail -n 1 || true)"
  if [[ -z "${line}" ]]; then
    axon_warn "ctest --preset ${preset} printed no summary line (status ${status}): no test selected, or ctest itself failed"
    return 1
  fi
  local failed total
  failed="$(sed -E 's/^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"${line}")"
  total="$(sed -E 's/^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"${line}")"
  total_passed=$((total_passed + total - failed))
  total_failed=$((total_failed + failed))
  return "${status}"
}

build_and_test() {
  local preset="$1"
  if stage "build ${preset}" axon_build "${preset}"; then
    stage "test ${preset}" run_ctest "${preset}" || true
  else
    axon_warn "skipping tests of preset ${preset}: its build failed"
  fi
}

stage "deps" axon_install_deps || axon_die "cannot continue without the build dependencies"
stage "hugepages" axon_reserve_hugepages "${AXON_HUGEPAGES:-64}" || true
# No test needs BPF yet; a failed mount is reported but does not fail the run.
if ! axon_mount_bpffs; then
  axon_warn "bpffs is not mounted; BPF tests (when they exist) will fail"
fi

build_and_test release
if ((quick)); then
  axon_log "--quick: skipping the asan and tsan presets"
else
  build_and_test asan
  build_and_test tsan
fi

echo
echo "== stage summary (total $(axon_elapsed "${run_start}"))"
printf '  %s\n' "${summary_lines[@]}"
status=0
if [[ ${#failed_stages[@]} -gt 0 ]]; then
  echo "failed stages: ${failed_stages[*]}"
  status=1
fi
echo "tests: ${total_passed} passed, ${total_failed} failed"
exit "${status}"
