#!/usr/bin/env bash
# WebTorrent benchmark: TABS headless Chromium tabs (default 8) download one SIZE_MB public object
# (default 64) with the example page (examples/web), from the server's webseed and from each other
# over WebRTC (the server's WebSocket tracker introduces them). Tabs arrive one after another,
# each once the one before has its first bytes, and all stay open. Prints what the webseed sent
# against what the tabs received (TABS x the object; plain HTTP would send all of it): the target
# is at most 3x the object. Writes bench/out/webtorrent.md.
# Needs .venv and the built page (./scripts/test.sh makes both) and Debian's chromium.
# SEEDBUCKET_BIN picks the server binary (default: cargo build --release, then target/release).
# Env: SIZE_MB=64 TABS=8, WEBCONNS (the page's requests in flight to the webseed; WebTorrent's
# default is 4), STRATEGY (the page's piece order: rarest, its default, or sequential).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv with Playwright)"; exit 1; }
[ -f examples/web/dist/main.js ] || { echo "build the page first: cd examples/web && npm ci && npm run build"; exit 1; }
command -v chromium >/dev/null || { echo "chromium is required (apt-get install chromium)"; exit 1; }
if [ -z "${SEEDBUCKET_BIN:-}" ]; then
  cargo build --release -q -p seedbucket --bin seedbucket
  export SEEDBUCKET_BIN=$ROOT/target/release/seedbucket
fi
WORK=$(mktemp -d /tmp/seedbucket-webtorrent.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python bench/webtorrent.py "$WORK" | tee "$OUT/webtorrent.md"
