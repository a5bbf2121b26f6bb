#!/usr/bin/env bash
# Fuzzes the parsers that take untrusted input, each for a bounded time:
#
#   filter  the SCIM filter, attribute-path and PATCH-path grammar (round trip through the
#           printer included)
#   patch   PATCH bodies parsed and applied to a User and a Group
#   config  the config loader (config::validate::from_str)
#
#   scripts/fuzz.sh                  # every target, FUZZ_SECS (default 60) seconds each
#   FUZZ_SECS=600 scripts/fuzz.sh patch
#
# cargo-fuzz drives libFuzzer; it needs -Z flags, which RUSTC_BOOTSTRAP=1 allows on the
# stable toolchain. Two directories per target, both kept in the repo:
#   fuzz/seeds/<target>/   hand-written inputs (RFC examples, IdP shapes, the example configs)
#                          and every input that once crashed, named rNN-… after its issue;
#                          read, never rewritten
#   fuzz/corpus/<target>/  what fuzzing found to reach new code; new inputs are added here.
#                          Shrink it with `RUSTC_BOOTSTRAP=1 cargo fuzz cmin --sanitizer none
#                          <target> fuzz/corpus/<target>` before committing.
# A crash stops the script with the input saved in fuzz/artifacts/<target>/: fix the bug,
# copy the input to fuzz/seeds/<target>/, and add a regression test that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECS:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(filter patch config); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

for t in "${targets[@]}"; do
    echo "== fuzz $t for ${secs}s"
    # No sanitizer: safe Rust has no memory errors for ASan to find, and without it the
    # build is several times faster. Debug assertions (overflow checks) stay on.
    mkdir -p "fuzz/corpus/$t"
    cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1
done
