#!/usr/bin/env bash
# Installs a built axon as systemd services:
#
#   ./deploy/install.sh [--build-dir DIR] [--prefix DIR] [--destdir DIR]
#
#   1. binaries (axon-dataplane, axon-controlplane, axonctl, axon-dataplane-stats,
#      echo_worker) to PREFIX/bin (default /usr/local/bin)
#   2. units to /etc/systemd/system, tmpfiles.d and sysusers.d snippets to /etc
#   3. example configs to /etc/axon/{dataplane,controlplane}.toml -- never overwritten
#   4. the axon-worker user, and /run/axon, /var/lib/axon, /var/log/axon
#   5. a self-signed TLS certificate for the API (/etc/axon/tls/) and an admin token
#      (/etc/axon/axonctl.token, its hash in /etc/axon/tokens) -- only when absent
#   6. `systemctl daemon-reload` when systemd is PID 1; otherwise how to start by hand
#
# With --destdir everything is staged under DIR (for packages and tests): the units still
# name PREFIX/bin, the user goes to DIR/etc/passwd, and systemctl is never called.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
usage: $0 [--build-dir DIR] [--prefix DIR] [--destdir DIR]
  --build-dir DIR  the CMake build directory (default: build/release, else build)
  --prefix DIR     where binaries go, as DIR/bin (default: /usr/local)
  --destdir DIR    stage the installation under DIR instead of /
USAGE
}

build_dir=""
prefix="/usr/local"
destdir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir)
      build_dir="${2:?--build-dir needs a directory}"
      shift
      ;;
    --prefix)
      prefix="${2:?--prefix needs a directory}"
      shift
      ;;
    --destdir)
      destdir="${2:?--destdir needs a directory}"
      shift
      ;;
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

if [[ -z "${build_dir}" ]]; then
  for candidate in "${AXON_ROOT}/build/release" "${AXON_ROOT}/build"; do
    if [[ -x "${candidate}/dataplane/axon-dataplane" ]]; then
      build_dir="${candidate}"
      break
    fi
  done
  [[ -n "${build_dir}" ]] || axon_die "no build found: run ./deploy/quickstart.sh (or cmake --preset release && cmake --build build/release) first, or pass --build-dir"
fi
[[ -d "${build_dir}" ]] || axon_die "--build-dir ${build_dir} does not exist"
[[ "${prefix}" == /* ]] || axon_die "--prefix must be an absolute path (got ${prefix})"
if [[ -n "${destdir}" ]]; then
  mkdir -p "${destdir}"
  destdir="$(cd "${destdir}" && pwd)"
elif [[ "$(id -u)" -ne 0 ]]; then
  axon_die "installing to / needs root (or use --destdir DIR to stage)"
fi

bindir="${prefix}/bin"
etc="${destdir}/etc"
axon_etc="${etc}/axon"
deploy="${AXON_ROOT}/deploy"

# --- 1. binaries -------------------------------------------------------------------------
install -d -m 0755 "${destdir}${bindir}"
# name:relative path in the build tree:required
binaries=(
  "axon-dataplane:dataplane/axon-dataplane:required"
  "axon-dataplane-stats:dataplane/axon-dataplane-stats:optional"
  "axon-controlplane:controlplane/axon-controlplane:optional"
  "axonctl:client/axonctl:required"
  "echo_worker:examples/echo_worker:optional"
)
have_controlplane=0
for entry in "${binaries[@]}"; do
  IFS=: read -r name path need <<<"${entry}"
  if [[ -x "${build_dir}/${path}" ]]; then
    install -m 0755 "${build_dir}/${path}" "${destdir}${bindir}/${name}"
    axon_log "installed ${bindir}/${name}"
    [[ "${name}" == axon-controlplane ]] && have_controlplane=1
  elif [[ "${need}" == required ]]; then
    axon_die "${build_dir}/${path} is missing: build it first (cmake --build ${build_dir})"
  else
    axon_warn "${build_dir}/${path} is missing: ${name} not installed"
  fi
done

# --- 2. units and snippets -----------------------------------------------------------------
install -d -m 0755 "${etc}/systemd/system" "${etc}/tmpfiles.d" "${etc}/sysusers.d"
for unit in axon-dataplane.service axon-controlplane.service; do
  sed "s|/usr/local/bin/|${bindir}/|g" "${deploy}/systemd/${unit}" >"${etc}/systemd/system/${unit}"
  chmod 0644 "${etc}/systemd/system/${unit}"
done
install -m 0644 "${deploy}/systemd/axon.tmpfiles.conf" "${etc}/tmpfiles.d/axon.conf"
install -m 0644 "${deploy}/systemd/axon.sysusers.conf" "${etc}/sysusers.d/axon.conf"
axon_log "installed units to /etc/systemd/system, /etc/tmpfiles.d/axon.conf, /etc/sysusers.d/axon.conf"

# --- 3. example configs (never overwritten) -------------------------------------------------
install -d -m 0755 "${axon_etc}"
install_config() { # install_config SOURCE TARGET
  if [[ -e "$2" ]]; then
    axon_log "kept existing ${2#"${destdir}"}"
  elif [[ -f "$1" ]]; then
    sed "s|/usr/local/bin/|${bindir}/|g" "$1" >"$2"
    chmod 0644 "$2"
    axon_log "installed example config ${2#"${destdir}"}: edit it (interface, cores, agents) before starting"
  else
    axon_warn "$1 not found: write ${2#"${destdir}"} yourself"
  fi
}
install_config "${deploy}/axon-dataplane.toml" "${axon_etc}/dataplane.toml"
install_config "${deploy}/axon-controlplane.toml" "${axon_etc}/controlplane.toml"

# --- 4. user and directories ---------------------------------------------------------------
if [[ -n "${destdir}" ]]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --root="${destdir}" "${etc}/sysusers.d/axon.conf"
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --root="${destdir}" --create "${etc}/tmpfiles.d/axon.conf"
  fi
else
  if ! getent passwd axon-worker >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
      systemd-sysusers /etc/sysusers.d/axon.conf
    else
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --comment "axon worker processes" axon-worker
    fi
    axon_log "created user axon-worker"
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /etc/tmpfiles.d/axon.conf
  else
    install -d -m 0755 /run/axon /run/axon/workers
    install -d -m 0750 /var/lib/axon /var/log/axon /var/log/axon/workers
  fi
fi

# --- 5. TLS certificate and admin token (only when absent) ----------------------------------
tls="${axon_etc}/tls"
install -d -m 0755 "${tls}"
if [[ ! -e "${tls}/server.crt" || ! -e "${tls}/server.key" ]]; then
  host="$(hostname 2>/dev/null || echo localhost)"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj "/CN=${host}" -addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:${host}" \
      -keyout "${tls}/server.key" -out "${tls}/server.crt" 2>/dev/null
  ) || axon_die "openssl could not create the API certificate in ${tls}"
  chmod 0600 "${tls}/server.key"
  chmod 0644 "${tls}/server.crt"
  # Self-signed: the certificate is its own CA. axonctl trusts ca.crt for loopback URLs.
  install -m 0644 "${tls}/server.crt" "${tls}/ca.crt"
  axon_log "created a self-signed API certificate ${tls#"${destdir}"}/server.crt (127.0.0.1, ::1, localhost, ${host})"
else
  axon_log "kept existing API certificate ${tls#"${destdir}"}/server.crt"
fi

token_file="${axon_etc}/axonctl.token"
tokens="${axon_etc}/tokens"
if [[ ! -s "${token_file}" ]]; then
  token=""
  if [[ "${have_controlplane}" -eq 1 ]]; then
    token="$("${destdir}${bindir}/axon-controlplane" token create --name admin --role admin --tokens-file "${tokens}" 2>/dev/null)" || token=""
  fi
  if [[ -z "${token}" ]]; then
    # Same format axon-controlplane writes: "<name> <role> sha256:<hex of the token>".
    token="$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
    hash="$(printf '%s' "${token}" | openssl dgst -sha256 -r | cut -d' ' -f1)"
    (
      umask 077
      printf 'admin admin sha256:%s\n' "${hash}" >>"${tokens}"
    )
  fi
  (
    umask 077
    printf '%s\n' "${token}" >"${token_file}"
  )
  chmod 0600 "${tokens}" "${token_file}"
  axon_log "created an admin token: ${token_file#"${destdir}"} (axonctl reads it by default; keep it root-only)"
else
  axon_log "kept existing admin token ${token_file#"${destdir}"}"
fi

# --- 6. systemd, or how to run by hand --------------------------------------------------------
if [[ -z "${destdir}" && -d /run/systemd/system && "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]]; then
  systemctl daemon-reload
  cat <<DONE
Installed. Edit /etc/axon/dataplane.toml and /etc/axon/controlplane.toml, then:
  systemctl enable --now axon-dataplane axon-controlplane
  axonctl status
DONE
else
  cat <<DONE
Installed${destdir:+ under ${destdir}}. systemd is not PID 1 here, so start the daemons by hand
(after editing /etc/axon/dataplane.toml and /etc/axon/controlplane.toml):
  ${bindir}/axon-dataplane --config /etc/axon/dataplane.toml &
  ${bindir}/axon-controlplane --config /etc/axon/controlplane.toml &
  ${bindir}/axonctl status
Stop them with SIGTERM (kill -TERM <pid>); SIGHUP reloads.
DONE
fi
