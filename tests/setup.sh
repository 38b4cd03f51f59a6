#!/usr/bin/env bash
# Installs what trailguard's tests and sandbox demo need, into the project:
#   .venv/   a Python venv with a pinned moto server (and awscli for the demo).
# Idempotent: a second run with everything in place only checks versions and
# touches no network, so it is safe offline once installed.
# Override the venv location with TRAILGUARD_VENV.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${TRAILGUARD_VENV:-$root/.venv}"
req="$here/requirements.txt"

# Debian packages the tests use: promtool (package prometheus) checks metrics and alert rules,
# umoci assembles the container image, systemd-analyze checks the unit; a C compiler builds
# the C parts of the build (libdeflate for scan, aws-lc and ring for TLS).
# Installed when missing and we may (root, as in CI); otherwise say what to install.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing tools; install the Debian packages: ${missing[*]}" >&2
    exit 1
  fi
fi

# The deployment validators (cfn-lint, checkov, hadolint, parliament), pinned, in their own venv.
deploy_venv="${TRAILGUARD_DEPLOY_VENV:-$root/.venv-deploy}"
deploy_req="$here/requirements-deploy.txt"
if ! { [ -x "$deploy_venv/bin/checkov" ] && cmp -s "$deploy_req" "$deploy_venv/.trailguard-requirements"; }; then
  echo "setup: installing deployment validators into $deploy_venv"
  "${PYTHON:-python3}" -m venv "$deploy_venv"
  "$deploy_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$deploy_req"
  cp "$deploy_req" "$deploy_venv/.trailguard-requirements"
fi

stamp="$venv/.trailguard-requirements"
if [ -x "$venv/bin/moto_server" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  echo "setup: $venv is up to date (moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)'))"
  exit 0
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup: $python lacks venv/ensurepip; on Debian: apt-get install -y python3-venv" >&2
  exit 1
fi

echo "setup: creating $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
echo "setup: installed moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') into $venv"
