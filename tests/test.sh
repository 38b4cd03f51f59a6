#!/usr/bin/env bash
# Runs every trailguard test: installs what the tests need (tests/setup.sh), then the workspace's
# unit, integration and end-to-end tests, then the deployment validators (tests/validate-deploy.sh,
# when present).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests/setup.sh
cargo test --workspace --locked "$@"
