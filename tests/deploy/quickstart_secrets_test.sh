#!/usr/bin/env bash
# deploy_quickstart_secrets_test (issue 11 item 17): the secrets the quickstart makes for
# its control plane (TLS key, tokens file, the plaintext admin token) are 0600 in a 0700
# directory, from creation on, and another local user can read none of them.
#
#   quickstart_secrets_test.sh SOURCE_DIR AXON_CONTROLPLANE_BIN
set -euo pipefail

src="${1:?usage: quickstart_secrets_test.sh SOURCE_DIR AXON_CONTROLPLANE_BIN}"
cp_bin="${2:?usage: quickstart_secrets_test.sh SOURCE_DIR AXON_CONTROLPLANE_BIN}"
# shellcheck source=../../deploy/lib/common.sh
source "${src}/deploy/lib/common.sh"
work="$(mktemp -d "/tmp/axon-qs-secrets-$$.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
chmod 0755 "${work}"
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# The quickstart must make its secrets through the helper, nowhere else.
qs="${src}/deploy/quickstart.sh"
if bash -n "${qs}"; then pass "bash -n quickstart.sh"; else fail "bash -n quickstart.sh"; fi
grep -q 'axon_make_api_secrets "${secrets}"' "${qs}" || fail "quickstart.sh does not use axon_make_api_secrets"
if grep -nE 'token create|-keyout' "${qs}"; then fail "quickstart.sh makes a secret outside axon_make_api_secrets"; fi
if command -v shellcheck >/dev/null; then
  if (cd "${src}/deploy" && shellcheck -S warning -x quickstart.sh lib/common.sh); then pass "shellcheck"; else fail "shellcheck"; fi
fi

# A permissive umask, as an operator's shell may have: the helper must not depend on it.
umask 000
dir="${work}/secrets"
axon_make_api_secrets "${dir}" "${cp_bin}" || fail "axon_make_api_secrets failed"
mode() { stat -c '%a' "$1"; }
[[ "$(mode "${dir}")" == 700 ]] && pass "secrets dir 0700" || fail "secrets dir is $(mode "${dir}"), not 700"
for f in server.key tokens admin.token; do
  [[ -s "${dir}/${f}" ]] || fail "${f} missing or empty"
  [[ "$(mode "${dir}/${f}")" == 600 ]] && pass "${f} 0600" || fail "${f} is $(mode "${dir}/${f}"), not 600"
done
[[ "$(mode "${dir}/server.crt")" == 644 ]] || fail "server.crt is $(mode "${dir}/server.crt"), not 644"
# The token is real: its SHA-256 is in the tokens file.
hash="$(tr -d '\n' <"${dir}/admin.token" | sha256sum | cut -d' ' -f1)"
grep -q "${hash}" "${dir}/tokens" && pass "admin token hash in tokens" || fail "admin token hash not in the tokens file"

# Another local user reads nothing, whatever the file modes below the directory.
if [[ "$(id -u)" == 0 ]] && command -v setpriv >/dev/null; then
  for f in admin.token tokens server.key; do
    if setpriv --reuid=nobody --regid=nogroup --clear-groups cat "${dir}/${f}" >/dev/null 2>&1; then
      fail "user nobody can read ${f}"
    else
      pass "nobody cannot read ${f}"
    fi
  done
fi

((failures == 0)) || { echo "${failures} failure(s)" >&2; exit 1; }
echo "all checks passed"
