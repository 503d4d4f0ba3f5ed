#!/usr/bin/env bash
# deploy_package_test: the Debian package, built, linted, installed, upgraded and removed in
# a throwaway Debian 12 root, and deploy/install.sh run through it.
#
#   package_test.sh SOURCE_DIR BUILD_DIR
#
# The throwaway root is the installed system itself under an overlay: / as the read-only
# lower layer, a tmpfs as the upper one, with its own /proc, /sys, /dev, /run and /tmp.
# Whatever dpkg, the maintainer scripts or install.sh write lands in the tmpfs and is gone
# when the test ends; the host's dpkg database and /etc are never touched. It takes
# seconds, against minutes for a debootstrap root that would then download axon's
# dependencies (docs/operations.md has both measurements).
#
# Checked: lintian reports no error; dpkg -i creates the user, the directories, the
# certificate and the token, registers both configs as conffiles, ships the profiles
# (axonctl tune list/check run inside) and the Python SDK; a reinstall and an upgrade keep
# an operator's config edit (the upgrade leaves the new default as .dpkg-dist); remove
# keeps the conffiles, purge leaves nothing of the package; install.sh installs through
# the package and applies a tuning profile (against a sandbox root), and rolls it back
# when a daemon's --check fails. PID 1 is not systemd here: systemctl enable/start are
# not exercised (install.sh says so in its output), everything else is.
# Needs root (exit 77 = skipped otherwise).
# `check && pass || fail` is deliberate: pass never fails. ${...} in single quotes are
# dpkg-query fields.
# shellcheck disable=SC2015,SC2016
set -euo pipefail

src="${1:?usage: package_test.sh SOURCE_DIR BUILD_DIR}"
build="${2:?usage: package_test.sh SOURCE_DIR BUILD_DIR}"
if [[ "$(id -u)" -ne 0 ]]; then
  echo "skip: needs root (overlay mounts, chroot)"
  exit 77
fi
for tool in dpkg-deb lintian chroot mount; do
  command -v "${tool}" >/dev/null || {
    echo "FAIL: ${tool} is not installed (apt-get install lintian dpkg-dev; deploy/lib/common.sh lists it)" >&2
    exit 1
  }
done

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# --- build and lint ---------------------------------------------------------------------------
start=$(date +%s)
log="$(mktemp /tmp/axon-package-build-$$.XXXXXX)"
if ! cmake --build "${build}" --target package >"${log}" 2>&1; then
  tail -n 30 "${log}" >&2
  rm -f "${log}"
  echo "FAIL: cmake --build ${build} --target package" >&2
  exit 1
fi
rm -f "${log}"
deb="$(find "${build}" -maxdepth 1 -name 'axon_*.deb' -printf '%T@ %p\n' | sort -nr | head -n 1 | cut -d' ' -f2-)"
[[ -n "${deb}" ]] || {
  echo "FAIL: no axon_*.deb in ${build}" >&2
  exit 1
}
pass "package built in $(($(date +%s) - start)) s: $(basename "${deb}") ($(du -h "${deb}" | cut -f1))"

lint="$(lintian --tag-display-limit 0 "${deb}" 2>&1 || true)"
errors="$(grep -E '^E: ' <<<"${lint}" || true)"
if [[ -z "${errors}" ]]; then
  pass "lintian: no errors ($(grep -c '^W: ' <<<"${lint}" || true) warnings)"
else
  fail "lintian errors:"$'\n'"${errors}"
fi

# --- the throwaway root -------------------------------------------------------------------
base="$(mktemp -d /tmp/axon-package-test-$$.XXXXXX)"
root="${base}/root"
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  rm -rf "${base}"
}
trap cleanup EXIT
mkdir -p "${base}/layer" "${root}"
mount -t tmpfs -o size=2g axon-pkg-test "${base}/layer"
mounts+=("${base}/layer")
mkdir -p "${base}/layer/upper" "${base}/layer/work"
mount -t overlay axon-pkg-root -o "lowerdir=/,upperdir=${base}/layer/upper,workdir=${base}/layer/work" "${root}"
mounts+=("${root}")
mount -t proc proc "${root}/proc" && mounts+=("${root}/proc")
mount -t sysfs sysfs "${root}/sys" && mounts+=("${root}/sys")
mount --rbind /dev "${root}/dev" && mount --make-rslave "${root}/dev" && mounts+=("${root}/dev")
mount -t tmpfs run "${root}/run" && mounts+=("${root}/run")
mount -t tmpfs tmp "${root}/tmp" && mounts+=("${root}/tmp")
in_root() { chroot "${root}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
cp "${deb}" "${root}/tmp/axon.deb"

if in_root dpkg-query -W -f='${Status}' axon 2>/dev/null | grep -q installed; then
  in_root dpkg -P axon >/dev/null 2>&1 || true # this host has it: start the copy from scratch
fi
[[ ! -e "${root}/etc/axon" ]] || in_root rm -rf /etc/axon
[[ "$(in_root getent passwd axon-worker || true)" == "" ]] || in_root userdel axon-worker >/dev/null 2>&1 || true

# --- install ----------------------------------------------------------------------------------
if in_root dpkg -i /tmp/axon.deb >"${base}/dpkg.log" 2>&1; then
  pass "dpkg -i"
else
  cat "${base}/dpkg.log" >&2
  fail "dpkg -i failed"
fi
expect() { # expect PATH MODE
  local mode
  if [[ ! -e "${root}$1" ]]; then
    fail "$1 missing after install"
    return
  fi
  mode="$(stat -c %a "${root}$1")"
  [[ "${mode}" == "$2" ]] || fail "$1 has mode ${mode}, want $2"
}
expect /usr/bin/axon-dataplane 755
expect /usr/bin/axon-controlplane 755
expect /usr/bin/axonctl 755
expect /usr/bin/axon-dataplane-stats 755
expect /usr/lib/axon/echo_worker 755
expect /usr/lib/libaxon_worker.so 644
expect /usr/lib/python3/dist-packages/axon_worker.py 644
expect /lib/systemd/system/axon-dataplane.service 644
expect /lib/systemd/system/axon-controlplane.service 644
expect /usr/lib/sysusers.d/axon.conf 644
expect /usr/lib/tmpfiles.d/axon.conf 644
expect /etc/axon/dataplane.toml 644
expect /etc/axon/controlplane.toml 644
expect /etc/axon/tls/server.key 600
expect /etc/axon/axonctl.token 600
expect /etc/axon/tokens 600
expect /usr/share/axon/tuning/profiles/latency.toml 644
expect /usr/share/doc/axon/copyright 644
expect /usr/share/doc/axon/tuning.md 644
for dir in /run/axon/workers /var/lib/axon /var/log/axon/workers; do
  [[ -d "${root}${dir}" ]] || fail "${dir} was not created"
done
grep -q '^ExecStart=/usr/bin/axon-dataplane ' "${root}/lib/systemd/system/axon-dataplane.service" ||
  fail "the packaged unit does not run /usr/bin/axon-dataplane"
grep -q '/usr/local/' "${root}/lib/systemd/system/axon-dataplane.service" "${root}/etc/axon/controlplane.toml" &&
  fail "packaged files still name /usr/local"
grep -q '"/usr/lib/axon/echo_worker"' "${root}/etc/axon/controlplane.toml" || fail "controlplane.toml's worker path"
in_root getent passwd axon-worker | grep -q ':/usr/sbin/nologin$' && pass "axon-worker user created, no login shell" ||
  fail "axon-worker user missing or has a shell"
token="$(cat "${root}/etc/axon/axonctl.token")"
hash="$(printf '%s' "${token}" | openssl dgst -sha256 -r | cut -d' ' -f1)"
grep -q "^admin admin sha256:${hash}\$" "${root}/etc/axon/tokens" && pass "admin token registered" || fail "token hash"
conffiles="$(in_root dpkg-query -W -f='${Conffiles}' axon)"
grep -q '/etc/axon/dataplane.toml' <<<"${conffiles}" && grep -q '/etc/axon/controlplane.toml' <<<"${conffiles}" &&
  pass "both configs are conffiles" || fail "conffiles: ${conffiles}"
in_root axonctl tune list | grep -q '^latency ' && pass "axonctl tune list finds the packaged profiles" ||
  fail "axonctl tune list: $(in_root axonctl tune list 2>&1)"
in_root axonctl tune check --profile latency --cores 1 >"${base}/check" 2>&1 && grep -q "summary:" "${base}/check" &&
  pass "axonctl tune check --profile latency runs in the installed root" || fail "tune check: $(cat "${base}/check")"
in_root python3 -c 'import axon_worker; axon_worker._load()' && pass "the Python SDK imports and loads libaxon_worker.so" ||
  fail "python3 import axon_worker"

# --- an operator's edit survives a reinstall and an upgrade ------------------------------------
echo "# operator edit" >>"${root}/etc/axon/dataplane.toml"
edited="$(sha256sum <"${root}/etc/axon/dataplane.toml")"
token_sum="$(sha256sum <"${root}/etc/axon/axonctl.token")"
in_root dpkg -i /tmp/axon.deb >"${base}/dpkg.log" 2>&1 || fail "reinstall: $(cat "${base}/dpkg.log")"
[[ "$(sha256sum <"${root}/etc/axon/dataplane.toml")" == "${edited}" ]] && pass "reinstall kept the edited config" ||
  fail "reinstall overwrote the edited config"
# A newer version whose default config changed: dpkg keeps the operator's file and puts the
# new default beside it as .dpkg-dist (--force-confold answers the question dpkg would ask).
version="$(dpkg-deb -f "${deb}" Version)"
mkdir -p "${base}/next"
dpkg-deb -R "${deb}" "${base}/next/pkg"
sed -i "s/^Version: .*/Version: ${version}+next1/" "${base}/next/pkg/DEBIAN/control"
echo "# changed in the next version" >>"${base}/next/pkg/etc/axon/dataplane.toml"
(cd "${base}/next/pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum >DEBIAN/md5sums)
dpkg-deb -Zgzip -z1 -b "${base}/next/pkg" "${root}/tmp/axon-next.deb" >/dev/null
in_root dpkg -i --force-confold /tmp/axon-next.deb >"${base}/dpkg.log" 2>&1 || fail "upgrade: $(cat "${base}/dpkg.log")"
[[ "$(in_root dpkg-query -W -f='${Version}' axon)" == "${version}+next1" ]] || fail "upgrade did not install"
[[ "$(sha256sum <"${root}/etc/axon/dataplane.toml")" == "${edited}" ]] && pass "upgrade kept the edited config" ||
  fail "upgrade overwrote the edited config"
[[ -f "${root}/etc/axon/dataplane.toml.dpkg-dist" ]] && pass "upgrade left the new default as .dpkg-dist" ||
  fail "no dataplane.toml.dpkg-dist after the upgrade"
[[ "$(sha256sum <"${root}/etc/axon/axonctl.token")" == "${token_sum}" ]] || fail "an upgrade replaced the admin token"
rm -f "${root}/etc/axon/dataplane.toml.dpkg-dist"

# --- remove, purge ----------------------------------------------------------------------------
mapfile -t shipped < <(dpkg-deb -c "${deb}" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')
in_root dpkg -r axon >"${base}/dpkg.log" 2>&1 || fail "dpkg -r: $(cat "${base}/dpkg.log")"
[[ ! -e "${root}/usr/bin/axon-dataplane" ]] || fail "dpkg -r left /usr/bin/axon-dataplane"
[[ -f "${root}/etc/axon/dataplane.toml" ]] && pass "remove keeps the configs" || fail "remove deleted a conffile"
in_root dpkg -P axon >"${base}/dpkg.log" 2>&1 || fail "dpkg -P: $(cat "${base}/dpkg.log")"
left=()
for f in "${shipped[@]}"; do
  [[ -e "${root}${f}" || -L "${root}${f}" ]] && left+=("${f}")
done
for d in /etc/axon /var/lib/axon /var/log/axon; do [[ -e "${root}${d}" ]] && left+=("${d}"); done
if [[ ${#left[@]} -eq 0 ]]; then
  pass "purge left nothing of the package (${#shipped[@]} files checked)"
else
  fail "purge left: ${left[*]}"
fi
in_root dpkg-query -W -f='${Status}' axon 2>/dev/null | grep -q 'installed' && fail "axon still installed after purge"

# --- install.sh through the package, with a tuning profile --------------------------------------
# The profile is applied to a sandbox root inside the throwaway root (--tune-arg), so the
# host's own sysctls are never touched.
mkdir -p "${root}/tmp/sbx/proc/sys/vm" "${root}/tmp/sbx/sys/devices/system/cpu" "${root}/tmp/profiles"
echo 0-1 >"${root}/tmp/sbx/sys/devices/system/cpu/online"
echo 60 >"${root}/tmp/sbx/proc/sys/vm/swappiness"
printf '[profile]\ndescription = "install test"\n[sysctl]\n"vm.swappiness" = 7\n' >"${root}/tmp/profiles/itest.toml"
mkdir -p "${root}${src}"
mount --bind "${src}" "${root}${src}" && mounts+=("${root}${src}")
install_sh() {
  in_root "${src}/deploy/install.sh" --deb /tmp/axon.deb --profile itest --tune-arg=--root=/tmp/sbx \
    --tune-arg=--state-dir=/tmp/sbx-state --tune-arg=--profile-dir=/tmp/profiles
}
# A data plane config that passes --check on any host: loopback, core 0, io_uring.
good_config() {
  sed -e 's/^interface = .*/interface = "lo"/' -e 's/^cores = .*/cores = [0]/' -e 's/^backend = .*/backend = "uring"/' \
    "${src}/deploy/axon-dataplane.toml" >"${root}/tmp/dataplane.good.toml"
}
good_config
# First the failure path: a broken data plane config stops the "start", and the tuning goes back.
mkdir -p "${root}/etc/axon"
cp "${root}/tmp/dataplane.good.toml" "${root}/etc/axon/dataplane.toml"
echo "frobnicate = 1" >>"${root}/etc/axon/dataplane.toml"
if install_sh >"${base}/install.log" 2>&1; then
  fail "install.sh succeeded although axon-dataplane --check must fail"
else
  grep -q "rolling back tuning profile itest" "${base}/install.log" && pass "install.sh rolled the tuning back when the start check failed" ||
    fail "install.sh output: $(cat "${base}/install.log")"
fi
[[ "$(cat "${root}/tmp/sbx/proc/sys/vm/swappiness")" == 60 ]] || fail "swappiness not rolled back"
[[ ! -e "${root}/tmp/sbx-state/snapshot.json" ]] || fail "snapshot left after install.sh's rollback"
# Then success: a valid config, the profile stays applied.
cp "${root}/tmp/dataplane.good.toml" "${root}/etc/axon/dataplane.toml"
if install_sh >"${base}/install.log" 2>&1; then
  pass "install.sh installed through the package and applied the profile"
else
  fail "install.sh failed: $(tail -n 20 "${base}/install.log")"
fi
[[ "$(cat "${root}/tmp/sbx/proc/sys/vm/swappiness")" == 7 ]] || fail "install.sh did not apply the profile"
grep -q "systemd is not PID 1 here" "${base}/install.log" || fail "install.sh did not say systemd was not PID 1"
in_root axonctl tune rollback --root /tmp/sbx --state-dir /tmp/sbx-state >/dev/null || fail "rollback after install.sh"

if ((failures > 0)); then
  echo "${failures} package check(s) failed"
  exit 1
fi
echo "all package checks passed ($(($(date +%s) - start)) s)"
