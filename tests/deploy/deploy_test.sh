#!/usr/bin/env bash
# deploy_units_test: install.sh --destdir (the package, unpacked and set up) into a temporary
# root, then check what it installed.
#
#   deploy_test.sh SOURCE_DIR BUILD_DIR
#
# Fails on: a shell syntax error or shellcheck finding in install.sh, any output of
# `systemd-analyze verify` for the installed units, a missing or wrongly-permissioned file,
# a token whose hash is not in the tokens file, and a second install that overwrites
# configs, the certificate or the token.
set -euo pipefail

src="${1:?usage: deploy_test.sh SOURCE_DIR BUILD_DIR}"
build="${2:?usage: deploy_test.sh SOURCE_DIR BUILD_DIR}"
root="$(mktemp -d "/tmp/axon-ops-deploy-$$.XXXXXX")"
trap 'rm -rf "${root}"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() {
  echo "ok: $*"
}

install_sh="${src}/deploy/install.sh"

# --- the script itself ------------------------------------------------------------------------
if bash -n "${install_sh}"; then pass "bash -n install.sh"; else fail "bash -n install.sh"; fi
if command -v shellcheck >/dev/null 2>&1; then
  if (cd "${src}/deploy" && shellcheck -x install.sh); then
    pass "shellcheck install.sh"
  else
    fail "shellcheck install.sh"
  fi
else
  echo "skip: shellcheck not installed"
fi

for bin in dataplane/axon-dataplane client/axonctl; do
  [[ -x "${build}/${bin}" ]] || {
    echo "FAIL: ${build}/${bin} is not built; build the tree (cmake --build ${build}) before this test" >&2
    exit 1
  }
done

# --- the package, once (install.sh would build it on each run) ---------------------------------
log="${root}.log"
if ! cmake --build "${build}" --target package >"${log}" 2>&1; then
  tail -n 30 "${log}" >&2
  echo "FAIL: cmake --build ${build} --target package" >&2
  exit 1
fi
deb="$(find "${build}" -maxdepth 1 -name 'axon_*.deb' -printf '%T@ %p\n' | sort -nr | head -n 1 | cut -d' ' -f2-)"

# --- install into the temporary root ---------------------------------------------------------
if "${install_sh}" --deb "${deb}" --destdir "${root}" >"${log}" 2>&1; then
  pass "install.sh --destdir"
else
  cat "${log}" >&2
  fail "install.sh --destdir exited non-zero"
fi
grep -q "systemd is not PID 1" "${log}" || grep -q "systemctl enable" "${log}" || fail "install.sh did not say how to start the daemons"
rm -f "${log}"

expect_file() { # expect_file PATH MODE
  local path="${root}$1"
  if [[ ! -f "${path}" ]]; then
    fail "$1 was not installed"
    return
  fi
  local mode
  mode="$(stat -c %a "${path}")"
  [[ "${mode}" == "$2" ]] || fail "$1 has mode ${mode}, want $2"
}
expect_file /usr/bin/axon-dataplane 755
expect_file /usr/bin/axonctl 755
expect_file /lib/systemd/system/axon-dataplane.service 644
expect_file /lib/systemd/system/axon-controlplane.service 644
expect_file /usr/lib/tmpfiles.d/axon.conf 644
expect_file /usr/lib/sysusers.d/axon.conf 644
expect_file /etc/axon/dataplane.toml 644
expect_file /etc/axon/tls/server.crt 644
expect_file /etc/axon/tls/server.key 600
expect_file /etc/axon/tls/ca.crt 644
expect_file /etc/axon/axonctl.token 600
expect_file /etc/axon/tokens 600
[[ -d "${root}/run/axon/workers" ]] || fail "tmpfiles did not create /run/axon/workers"
[[ -d "${root}/var/log/axon/workers" ]] || fail "tmpfiles did not create /var/log/axon/workers"
if [[ -f "${root}/etc/passwd" ]]; then
  grep -q '^axon-worker:' "${root}/etc/passwd" || fail "sysusers did not create axon-worker"
  grep '^axon-worker:' "${root}/etc/passwd" | grep -q ':/usr/sbin/nologin$' || fail "axon-worker has a login shell"
fi
pass "installed files and modes"

# The certificate covers the loopback API address, and the token's hash is registered.
san="$(openssl x509 -in "${root}/etc/axon/tls/server.crt" -noout -ext subjectAltName 2>/dev/null || true)"
[[ "${san}" == *"IP Address:127.0.0.1"* ]] || fail "server.crt has no 127.0.0.1 SAN: ${san}"
openssl x509 -in "${root}/etc/axon/tls/server.crt" -noout -checkend 86400 >/dev/null || fail "server.crt expires within a day"
token="$(cat "${root}/etc/axon/axonctl.token")"
[[ "${#token}" -ge 32 ]] || fail "the admin token is too short (${#token} chars)"
hash="$(printf '%s' "${token}" | openssl dgst -sha256 -r | cut -d' ' -f1)"
grep -Eq "^admin admin sha256:${hash}\$" "${root}/etc/axon/tokens" || fail "the token's hash is not in /etc/axon/tokens"
pass "certificate and token"

# --- a second install keeps what is there -------------------------------------------------------
echo "# operator edit" >>"${root}/etc/axon/dataplane.toml"
sums_before="$(cd "${root}" && sha256sum etc/axon/dataplane.toml etc/axon/tls/server.crt etc/axon/tls/server.key etc/axon/axonctl.token etc/axon/tokens)"
"${install_sh}" --deb "${deb}" --destdir "${root}" >/dev/null 2>&1 || fail "second install.sh run failed"
sums_after="$(cd "${root}" && sha256sum etc/axon/dataplane.toml etc/axon/tls/server.crt etc/axon/tls/server.key etc/axon/axonctl.token etc/axon/tokens)"
[[ "${sums_before}" == "${sums_after}" ]] || fail "a second install overwrote configs, the certificate or the token"
pass "second install overwrote nothing"

# --- systemd-analyze verify on the installed units ----------------------------------------------
# ExecStart= must name executables that exist: point /usr/bin at the staged binaries.
# axon-controlplane may not be built yet; /bin/true stands in for it then.
verify_dir="${root}/verify"
mkdir -p "${verify_dir}"
stand_in=()
if [[ ! -x "${root}/usr/bin/axon-controlplane" ]]; then
  echo "note: axon-controlplane is not built; /bin/true stands in for it in the verified unit"
  stand_in=(-e "s|/usr/bin/axon-controlplane|/bin/true|g")
fi
for unit in axon-dataplane.service axon-controlplane.service; do
  sed "${stand_in[@]}" -e "s|/usr/bin/|${root}/usr/bin/|g" \
    "${root}/lib/systemd/system/${unit}" >"${verify_dir}/${unit}"
done
verify() { # verify UNIT...: prints systemd-analyze's findings; succeeds only when there are none
  local out rc=0
  out="$(cd "${verify_dir}" && systemd-analyze verify "$@" 2>&1)" || rc=$?
  [[ -n "${out}" ]] && printf '%s\n' "${out}"
  [[ "${rc}" -eq 0 && -z "${out}" ]]
}
if verify ./axon-dataplane.service ./axon-controlplane.service; then
  pass "systemd-analyze verify: no findings"
else
  fail "systemd-analyze verify reported problems with the units"
fi
for key in Type=notify WatchdogSec= Restart=on-failure ExecReload= LimitMEMLOCK=infinity; do
  grep -q "^${key}" "${verify_dir}/axon-dataplane.service" || fail "axon-dataplane.service lacks ${key}"
done
for key in Type=notify WatchdogSec= Delegate=yes KillMode=process After=.*axon-dataplane.service Wants=.*axon-dataplane.service; do
  grep -q "^${key}" "${verify_dir}/axon-controlplane.service" || fail "axon-controlplane.service lacks ${key}"
done

# The check itself can fail: a unit with an unknown key must be reported.
sed 's|^Restart=on-failure|Restart=on-failure\nRestartFrobnicate=yes|' "${verify_dir}/axon-dataplane.service" >"${verify_dir}/broken.service"
if verify ./broken.service >/dev/null; then
  fail "systemd-analyze verify accepted a unit with an unknown key: the check is blind"
else
  pass "systemd-analyze verify catches a bad key"
fi

if [[ "${failures}" -gt 0 ]]; then
  echo "${failures} check(s) failed" >&2
  exit 1
fi
echo "all deploy checks passed"
