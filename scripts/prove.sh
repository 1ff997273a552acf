#!/usr/bin/env bash
# The full runs behind docs/reliability.md, at the sizes the docs quote (scripts/test.sh runs
# the same tests bounded): hostile input with many more cases per property, 100 SIGKILL rounds
# of the crash-safety harness, and a 10-minute soak. Needs what scripts/test.sh installs (run
# it once first). Each size can be overridden through its environment variable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$ROOT/.venv/bin:$PATH
export SEEDBUCKET_FUZZ_CASES=${SEEDBUCKET_FUZZ_CASES:-20000}
export SEEDBUCKET_CRASH_ROUNDS=${SEEDBUCKET_CRASH_ROUNDS:-100}
export SEEDBUCKET_SOAK_SECONDS=${SEEDBUCKET_SOAK_SECONDS:-600}

cargo build --release -p seedbucket
export SEEDBUCKET_BIN=${SEEDBUCKET_BIN:-$ROOT/target/release/seedbucket}

echo "== hostile input: $SEEDBUCKET_FUZZ_CASES cases per property"
for crate in seedbucket-bencode seedbucket-wire seedbucket-s3; do
  cargo test --release -p "$crate" --test hostile_input -- --nocapture
done
cargo test --release -p seedbucket-it --test hostile_http -- --nocapture
echo "== crash safety: $SEEDBUCKET_CRASH_ROUNDS SIGKILL rounds"
pytest -q -s tests/interop/test_crash_safety.py
echo "== soak: $SEEDBUCKET_SOAK_SECONDS s"
pytest -q -s tests/interop/test_soak.py
