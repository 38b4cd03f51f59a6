#!/usr/bin/env bash
# Runs every trailguard test: installs what the tests need (tests/setup.sh), checks the code's
# habits (rustfmt, clippy with warnings denied, rustdoc with warnings denied), runs the
# workspace's unit, sandbox, CLI and end-to-end tests, then validates the deployment artifacts
# and tests the container image (tests/validate-deploy.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests/setup.sh
echo "test: cargo fmt --check"
cargo fmt --all --check
echo "test: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
echo "test: cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
cargo test --workspace --locked "$@"
tests/validate-deploy.sh
