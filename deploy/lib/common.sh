# shellcheck shell=bash
# Shared helpers for axon's deploy and test scripts. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Every function is safe under `set -euo pipefail`: failures are reported through the
# return status, and nothing here reads an unset variable.

if [[ -n "${AXON_COMMON_SH_LOADED:-}" ]]; then
  return 0
fi
AXON_COMMON_SH_LOADED=1

# The repository root, whichever directory the caller started in.
AXON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export AXON_ROOT

# Debian 12 packages needed to build, test and run axon. Every name here was checked to
# exist in bookworm with `apt-cache policy`.
AXON_DEPS=(
  # toolchain
  build-essential cmake ninja-build pkg-config g++ clang llvm lld
  libclang-rt-14-dev clang-format clang-tidy
  # test framework
  libgtest-dev libgmock-dev
  # shared memory and NUMA
  libnuma-dev numactl libboost-dev iceoryx libiceoryx-posh-dev
  # packet I/O: DPDK, XDP/eBPF, io_uring
  dpdk-dev libbpf-dev libxdp-dev xdp-tools bpftool liburing-dev
  # response cache: XXH3-128 of request payloads
  libxxhash-dev
  # control plane: config, CLI, JSON, capabilities, sd_notify, TLS
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libcap-dev libcap2-bin libsystemd-dev
  libssl-dev openssl curl prometheus python3-yaml
  # host tuning: ethtool's netlink interface (NIC queues, coalescing)
  libmnl-dev
  # fleet (docs/fleet.md): etcd for membership and shared config; tests start their own members
  etcd-server etcd-client
  # runtime tools used by the scripts
  iproute2 python3 procps jq ethtool
  # the Python packages (client/python, sdk/python): offline pip builds and their venv test
  python3-setuptools python3-wheel python3-pip python3-venv
  # the benchmark suite's broker peers (NATS server and C client, ZeroMQ) and its plots
  nats-server libnats-dev libzmq3-dev gnuplot-nox
  # install.sh and its tests: systemd-analyze/-tmpfiles/-sysusers, shellcheck; the
  # Debian package (CPack's DEB generator uses dpkg-shlibdeps) and its lint
  systemd shellcheck dpkg-dev fakeroot lintian
  # axonctl top's tmux-driven test and the dashboard's headless-browser test
  tmux chromium
)

# axon_log MESSAGE...: one timestamped line on stderr, so stdout stays for results.
axon_log() {
  printf '[axon %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

# axon_warn MESSAGE...: like axon_log, marked as a warning.
axon_warn() {
  printf '[axon %(%H:%M:%S)T] WARNING: %s\n' -1 "$*" >&2
}

# axon_die MESSAGE...: logs and exits the calling script with status 1.
axon_die() {
  printf '[axon %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2
  exit 1
}

# axon_as_root CMD...: runs CMD directly as root, through sudo otherwise.
axon_as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    axon_warn "not root and no sudo: cannot run '$*'"
    return 1
  fi
}

# axon_pkg_installed PKG: true when dpkg reports PKG as fully installed.
axon_pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
  [[ "${status}" == "install ok installed" ]]
}

# axon_install_deps [PKG...]: installs whichever of PKG... (default: AXON_DEPS) is missing.
# Says nothing and touches no package list when everything is already there; otherwise it
# refreshes the apt lists once and installs only the missing packages.
axon_install_deps() {
  local -a wanted missing=()
  if [[ $# -gt 0 ]]; then
    wanted=("$@")
  else
    wanted=("${AXON_DEPS[@]}")
  fi

  local pkg
  for pkg in "${wanted[@]}"; do
    axon_pkg_installed "${pkg}" || missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi

  axon_log "installing ${#missing[@]} missing package(s): ${missing[*]}"
  local -a apt_env=(env DEBIAN_FRONTEND=noninteractive)
  if ! axon_as_root "${apt_env[@]}" apt-get update -qq; then
    axon_warn "apt-get update failed"
    return 1
  fi
  if ! axon_as_root "${apt_env[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null; then
    axon_warn "apt-get install failed for: ${missing[*]}"
    return 1
  fi

  # Re-check: apt can exit 0 and still leave a package half-configured.
  local -a still=()
  for pkg in "${missing[@]}"; do
    axon_pkg_installed "${pkg}" || still+=("${pkg}")
  done
  if [[ ${#still[@]} -gt 0 ]]; then
    axon_warn "still not installed after apt-get: ${still[*]}"
    return 1
  fi
  axon_log "packages installed"
}

# axon_meminfo FIELD: prints the number after "FIELD:" in /proc/meminfo (0 if absent).
axon_meminfo() {
  awk -v key="$1:" '$1 == key { print $2; found = 1 } END { if (!found) print 0 }' /proc/meminfo
}

# axon_reserve_hugepages N: makes sure at least N default-size (2 MiB) hugepages are
# reserved. Never lowers the current reservation, since another user may rely on it.
# The kernel may grant fewer than asked when memory is fragmented; then it compacts
# memory and tries once more, and warns (status 0) if still short, because axon falls
# back to 4 KiB pages. Status 1 only when the value cannot be written at all.
axon_reserve_hugepages() {
  local want="${1:?axon_reserve_hugepages needs a page count}"
  if ! [[ "${want}" =~ ^[0-9]+$ ]]; then
    axon_warn "hugepage count must be a non-negative integer, got '${want}'"
    return 1
  fi
  local knob=/proc/sys/vm/nr_hugepages
  if [[ ! -r "${knob}" ]]; then
    axon_warn "${knob} not found: this kernel has no hugetlbfs support"
    return 1
  fi

  local current total
  current="$(<"${knob}")"
  if ((current < want)); then
    if ! echo "${want}" | axon_as_root tee "${knob}" >/dev/null; then
      axon_warn "could not write ${knob} (need root)"
      return 1
    fi
    total="$(axon_meminfo HugePages_Total)"
    if ((total < want)); then
      # Fragmented memory: drop clean caches, compact, try again.
      sync
      echo 3 | axon_as_root tee /proc/sys/vm/drop_caches >/dev/null 2>&1 || true
      echo 1 | axon_as_root tee /proc/sys/vm/compact_memory >/dev/null 2>&1 || true
      echo "${want}" | axon_as_root tee "${knob}" >/dev/null || true
    fi
  fi

  total="$(axon_meminfo HugePages_Total)"
  local free size_kb
  free="$(axon_meminfo HugePages_Free)"
  size_kb="$(axon_meminfo Hugepagesize)"
  if ((total < want)); then
    axon_warn "asked for ${want} hugepages, the kernel reserved ${total} (${free} free);" \
      "axon will fall back to 4 KiB pages where they run out"
  else
    axon_log "hugepages: ${total} x $((size_kb / 1024)) MiB reserved, ${free} free (wanted >= ${want})"
  fi
  return 0
}

# axon_mount_bpffs: mounts the BPF filesystem at /sys/fs/bpf unless it is already there.
axon_mount_bpffs() {
  local dir=/sys/fs/bpf
  if awk -v d="${dir}" '$2 == d && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts; then
    return 0
  fi
  axon_as_root mkdir -p "${dir}" 2>/dev/null || true
  if ! axon_as_root mount -t bpf bpf "${dir}"; then
    axon_warn "could not mount bpffs at ${dir}"
    return 1
  fi
  axon_log "mounted bpffs at ${dir}"
}

# axon_build PRESET: configures and builds one CMake preset from the repository root.
axon_build() {
  local preset="${1:?axon_build needs a preset name}"
  (
    cd "${AXON_ROOT}" || exit 1
    cmake --preset "${preset}" && cmake --build --preset "${preset}" -j"$(nproc)"
  )
}

# axon_now: seconds since the epoch, for stage timing.
axon_now() {
  printf '%(%s)T' -1
}

# axon_elapsed START: "Ns" or "MmSSs" since START (as printed by axon_now).
axon_elapsed() {
  local secs=$(($(axon_now) - $1))
  if ((secs >= 60)); then
    printf '%dm%02ds' $((secs / 60)) $((secs % 60))
  else
    printf '%ds' "${secs}"
  fi
}

# axon_make_api_secrets DIR CONTROLPLANE_BIN: a self-signed certificate for 127.0.0.1, a
# tokens file and one admin token for a throwaway control plane (quickstart, demos), all in
# DIR, which is made mode 0700. Every file is created under umask 077, so no secret is ever
# readable by another user, not even for the moment between creation and a chmod:
#   DIR/server.crt  DIR/server.key  DIR/tokens  DIR/admin.token (the plaintext token)
axon_make_api_secrets() {
  local dir="${1:?axon_make_api_secrets needs a directory}"
  local cp_bin="${2:?axon_make_api_secrets needs the axon-controlplane binary}"
  (
    umask 077
    mkdir -p "${dir}" && chmod 0700 "${dir}" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1 -keyout "${dir}/server.key" -out "${dir}/server.crt" 2>/dev/null ||
      { axon_warn "openssl could not make the API certificate"; exit 1; }
    "${cp_bin}" token create --tokens-file "${dir}/tokens" --name quickstart --role admin \
      >"${dir}/admin.token" 2>/dev/null || { axon_warn "cannot create the API token"; exit 1; }
    chmod 0600 "${dir}/server.key" "${dir}/tokens" "${dir}/admin.token"
    # The certificate is public: clients need it to verify the server.
    chmod 0644 "${dir}/server.crt"
  )
}
