#!/usr/bin/env bash
# Runs every trailguard test: installs what the tests need (tests/setup.sh), runs the workspace's
# unit, sandbox, CLI and end-to-end tests, then validates the deployment artifacts and tests the
# container image (tests/validate-deploy.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests/setup.sh
cargo test --workspace --locked "$@"
tests/validate-deploy.sh
