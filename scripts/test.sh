#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, integration tests.
#
# Works on a fresh Debian machine with only the Rust toolchain: everything the tests need is
# either built by cargo (SQLite is compiled in) or installed by this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
