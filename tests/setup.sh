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

# Debian packages the tests use: promtool (package prometheus) checks the metrics output.
# Installed when missing and we may (root, as in CI); otherwise say what to install.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian package prometheus (for promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: promtool not found; install it (Debian: apt-get install prometheus)" >&2
    exit 1
  fi
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
