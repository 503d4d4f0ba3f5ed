#!/usr/bin/env bash
# Installs axon from a source tree through its Debian package, the same package an
# operator would install with apt:
#
#   ./deploy/install.sh [--build-dir DIR | --deb FILE] [--profile NAME] [--tune-arg ARG]...
#                       [--no-start] [--destdir DIR]
#
#   1. the package: --deb FILE, else built from the build tree (default build/release) with
#      `cmake --build DIR --target package`
#   2. installed with dpkg (missing dependencies then come from apt-get -f install), keeping
#      every config that is already there (--force-confold; dpkg's default goes beside it
#      as .dpkg-dist); its
#      postinst creates the axon-worker user, /run/axon, /var/lib/axon, /var/log/axon, a
#      self-signed API certificate and an admin token, each only when missing. dpkg keeps
#      any /etc/axon/*.toml the operator changed (conffiles).
#   3. when systemd is PID 1: daemon-reload and `systemctl enable` of both units
#   4. --profile NAME: `axonctl tune apply --profile NAME` (with --dataplane-config
#      /etc/axon/dataplane.toml and every --tune-arg), which snapshots the original values
#   5. unless --no-start: start the services (systemd: restart both, wait until active;
#      otherwise: each daemon's --check, the part of a start that works without systemd).
#      If that fails and a profile was applied, `axonctl tune rollback` undoes it, and the
#      script exits 1 saying what failed.
#
# With --destdir the package is unpacked under DIR instead and set up there (user in
# DIR/etc/passwd, directories, certificate, token); nothing is enabled, tuned or started.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
usage: $0 [--build-dir DIR | --deb FILE] [--profile NAME] [--tune-arg ARG]... [--no-start] [--destdir DIR]
  --build-dir DIR  the CMake build directory to package (default: build/release)
  --deb FILE       install this axon_*.deb instead of building one
  --profile NAME   apply this tuning profile (axonctl tune list), rolled back if the services fail
  --tune-arg ARG   extra argument for axonctl tune apply/rollback (repeatable), e.g. --tune-arg=--cores=2-3
  --no-start       install (and tune) only; start nothing
  --destdir DIR    unpack and set up under DIR instead of installing (packages, tests)
USAGE
}

build_dir=""
deb=""
destdir=""
profile=""
start=1
tune_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir)
      build_dir="${2:?--build-dir needs a directory}"
      shift
      ;;
    --deb)
      deb="${2:?--deb needs a file}"
      shift
      ;;
    --destdir)
      destdir="${2:?--destdir needs a directory}"
      shift
      ;;
    --profile)
      profile="${2:?--profile needs a name}"
      shift
      ;;
    --tune-arg=*) tune_args+=("${1#--tune-arg=}") ;;
    --tune-arg)
      tune_args+=("${2:?--tune-arg needs an argument}")
      shift
      ;;
    --no-start) start=0 ;;
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

# --- 1. the package ----------------------------------------------------------------------
if [[ -z "${deb}" ]]; then
  build_dir="${build_dir:-${AXON_ROOT}/build/release}"
  [[ -f "${build_dir}/CMakeCache.txt" ]] ||
    axon_die "${build_dir} is not a configured build tree: run cmake --preset release (or pass --build-dir / --deb)"
  axon_log "building the package in ${build_dir} (cmake --build ${build_dir} --target package)"
  cmake --build "${build_dir}" --target package >"${build_dir}/install-package.log" 2>&1 ||
    axon_die "packaging failed: see ${build_dir}/install-package.log"
  deb="$(find "${build_dir}" -maxdepth 1 -name 'axon_*.deb' -printf '%T@ %p\n' | sort -nr | head -n 1 | cut -d' ' -f2-)"
  [[ -n "${deb}" ]] || axon_die "no axon_*.deb in ${build_dir} after packaging"
fi
[[ -f "${deb}" ]] || axon_die "${deb} does not exist"
axon_log "package: ${deb}"

# --- staging: unpack and set up under DESTDIR -------------------------------------------------
if [[ -n "${destdir}" ]]; then
  mkdir -p "${destdir}"
  destdir="$(cd "${destdir}" && pwd)"
  # Like dpkg: a conffile already under DESTDIR is kept, the package's goes beside it as
  # .dpkg-dist.
  unpacked="$(mktemp -d)"
  dpkg-deb -x "${deb}" "${unpacked}"
  while read -r conffile; do
    [[ -n "${conffile}" && -e "${destdir}${conffile}" && -e "${unpacked}${conffile}" ]] || continue
    if ! cmp -s "${unpacked}${conffile}" "${destdir}${conffile}"; then
      mv "${unpacked}${conffile}" "${unpacked}${conffile}.dpkg-dist"
      axon_log "kept ${conffile}; the package's default is ${conffile}.dpkg-dist"
    fi
  done < <(dpkg-deb -I "${deb}" conffiles 2>/dev/null || true)
  cp -a "${unpacked}/." "${destdir}/"
  rm -rf "${unpacked}"
  "${destdir}/usr/lib/axon/axon-setup" --root "${destdir}"
  cat <<DONE
Unpacked under ${destdir} and set up there (axon-worker user, directories, API certificate, admin
token). Nothing was enabled or started; systemd is not PID 1 here or this is a staging root.
DONE
  exit 0
fi

[[ "$(id -u)" -eq 0 ]] || axon_die "installing needs root (or use --destdir DIR to stage)"

# --- 2. install ---------------------------------------------------------------------------------
# A config the operator already has (changed, or written before the first install) is kept
# and never asked about: --force-confold; dpkg puts its own default beside it as .dpkg-dist.
dpkg_opts=(--force-confdef --force-confold)
if ! dpkg "${dpkg_opts[@]}" -i "${deb}"; then
  axon_warn "dpkg could not configure axon (missing dependencies?); trying apt-get -f install"
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ||
    axon_die "the axon package did not install: see the dpkg and apt-get output above"
fi
# shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not a shell variable
dpkg-query -W -f='${Status}' axon 2>/dev/null | grep -q 'install ok installed' ||
  axon_die "the axon package is not installed after dpkg -i"
# shellcheck disable=SC2016
axon_log "installed $(dpkg-query -W -f='${Package} ${Version}' axon)"

systemd=0
if [[ -d /run/systemd/system && "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]]; then
  systemd=1
fi

# --- 3. units -----------------------------------------------------------------------------------
if ((systemd)); then
  systemctl daemon-reload
  systemctl enable axon-dataplane.service axon-controlplane.service
  axon_log "enabled axon-dataplane and axon-controlplane"
else
  axon_log "systemd is not PID 1 here: units installed, not enabled"
fi

# --- 4. tuning ---------------------------------------------------------------------------------
tune() { # tune VERB [ARGS...]
  local verb="$1"
  shift
  local -a dp=()
  [[ "${verb}" == rollback ]] || dp=(--dataplane-config /etc/axon/dataplane.toml)
  axonctl tune "${verb}" "$@" "${dp[@]}" "${tune_args[@]}"
}
tuned=0
if [[ -n "${profile}" ]]; then
  axon_log "applying tuning profile ${profile} (the original values are kept for rollback)"
  if ! tune apply --profile "${profile}"; then
    tune rollback >/dev/null 2>&1 || true
    axon_die "tuning profile ${profile} could not be applied (see above); anything it changed was rolled back"
  fi
  tuned=1
fi

# --- 5. start ----------------------------------------------------------------------------------
fail_start() { # fail_start MESSAGE: roll the tuning back, then stop with MESSAGE
  if ((tuned)); then
    axon_warn "rolling back tuning profile ${profile}"
    tune rollback || axon_warn "rollback left values behind: run axonctl tune rollback again"
  fi
  axon_die "$1"
}
if ((start)); then
  if ((systemd)); then
    systemctl restart axon-dataplane.service axon-controlplane.service ||
      fail_start "the services did not start: journalctl -u axon-dataplane -u axon-controlplane"
    for _ in $(seq 1 30); do
      if systemctl is-active --quiet axon-dataplane.service && systemctl is-active --quiet axon-controlplane.service; then
        break
      fi
      sleep 1
    done
    if ! systemctl is-active --quiet axon-dataplane.service || ! systemctl is-active --quiet axon-controlplane.service; then
      fail_start "the services are not active after 30 s: systemctl status axon-dataplane axon-controlplane"
    fi
    axon_log "axon-dataplane and axon-controlplane are running"
  else
    # Without systemd the daemons cannot be started as services; their --check is the
    # part of a start that can be verified: config, certificate, users, cores.
    axon-dataplane --config /etc/axon/dataplane.toml --check ||
      fail_start "axon-dataplane --check failed: fix /etc/axon/dataplane.toml (interface, cores)"
    axon-controlplane --config /etc/axon/controlplane.toml --check ||
      fail_start "axon-controlplane --check failed: fix /etc/axon/controlplane.toml"
    cat <<DONE
Installed. systemd is not PID 1 here, so start the daemons by hand:
  axon-dataplane --config /etc/axon/dataplane.toml &
  axon-controlplane --config /etc/axon/controlplane.toml &
  axonctl status
Stop them with SIGTERM (kill -TERM <pid>); SIGHUP reloads.
DONE
  fi
else
  cat <<DONE
Installed (not started). Edit /etc/axon/dataplane.toml and /etc/axon/controlplane.toml, then:
  systemctl enable --now axon-dataplane axon-controlplane
  axonctl status
DONE
fi
