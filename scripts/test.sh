#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust and nothing else:
# installs what the tests need (Debian packages when root, Python tools into .venv), builds the
# release binary, then runs the Rust tests (unit + integration against the real binary with
# aws-sdk-s3) and the interop tests (aws-cli, boto3). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Debian packages the tests drive. Later suites append here.
# redis-server and nginx: the scale-out test starts its own on free loopback ports (the system
# services are never used). jq: the README's examples use it (tests/interop/test_readme.py).
# rclone and s3cmd: driven against a versioned bucket (tests/interop/test_versioning.py).
# chromium: headless, driven by Playwright, runs the WebTorrent page (tests/interop/test_webtorrent.py).
APT_PACKAGES="curl jq python3-venv aria2 transmission-cli qbittorrent-nox redis-server nginx rclone s3cmd chromium"

missing=()
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: missing Debian packages (${missing[*]}); not root, continuing with what is installed"
  fi
fi
# node and npm (the WebTorrent page's bundler): Debian's packages unless some node is already
# installed (nodesource's nodejs carries its own npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian packages: nodejs npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
for tool in curl jq python3 cargo aria2c transmission-show qbittorrent-nox redis-server rclone s3cmd chromium node npm; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is required"; exit 1; }
done
# (nginx is in /usr/sbin, off PATH for most users)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "FATAL: nginx is required"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing Python test tools"
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
export PATH=$ROOT/.venv/bin:$PATH
for tool in aws pytest; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool did not install"; exit 1; }
done

# The WebTorrent example page (examples/web), which the browser tests load: its JavaScript comes
# from the npm registry (exact versions in package-lock.json) and is bundled into its dist/.
echo "== building the WebTorrent example page"
(cd examples/web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) \
  || { echo "FATAL: examples/web did not build"; exit 1; }
[ -f examples/web/dist/index.html ] && [ -f examples/web/dist/main.js ] \
  || { echo "FATAL: examples/web/dist is incomplete"; exit 1; }

# imdl: a strict torrent checker (sorted keys, canonical integers, piece content).
if [ ! -x .tools/bin/imdl ]; then
  echo "== installing imdl (cargo install, about a minute and a half)"
  cargo install -q imdl --version 0.1.16 --root .tools
fi
export PATH=$ROOT/.tools/bin:$PATH
command -v imdl >/dev/null || { echo "FATAL: imdl did not install"; exit 1; }

# Garage: a real distributed S3 backend for the gateway tests (tests/interop/backends.py).
# AGPL, so it only runs as a separate process; installed once per machine outside the clone,
# into $CARGO_HOME/bin.
GARAGE_VERSION=2.5.0
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
garage_ok() { # [binary]: true if it says it is $GARAGE_VERSION ("garage cargo:2.5.0 [features: ...]")
  local v re="(^|[^0-9.])${GARAGE_VERSION//./\\.}([^0-9.]|$)"
  v=$("${1:-garage}" --version 2>/dev/null) || return 1
  [[ ${v%%$'\n'*} =~ $re ]]
}
if ! garage_ok "$CARGO_BIN/garage" && ! garage_ok garage; then
  echo "== installing garage $GARAGE_VERSION into $CARGO_BIN (cargo install, about 12 minutes on 2 cores)"
  cargo install -q --locked garage --version "$GARAGE_VERSION"
fi
# Prefer $CARGO_BIN's garage only when the one on PATH (if any) is not the wanted version.
if garage_ok garage; then :; else export PATH=$CARGO_BIN:$PATH; fi
hash -r
garage_ok || { echo "FATAL: garage $GARAGE_VERSION did not install (found: $(garage --version 2>&1 | head -1))"; exit 1; }

echo "== building (release)"
cargo build --release --workspace --bins
export SEEDBUCKET_BIN=$ROOT/target/release/seedbucket
# The README's first command must keep working: one binary for `cargo run` to pick.
cargo run --release -q -- --version

passed=0; failed=0
run_suite() { # name command...
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); echo "-- $name: ok"; else failed=$((failed + 1)); echo "-- $name: FAILED"; fi
}
run_suite "cargo test (unit and integration)" cargo test --release --workspace --no-fail-fast
# (test_scaleout.py runs once, in its own step below.)
run_suite "interop: aws-cli, boto3, curl, aria2c, transmission, qbittorrent-nox, libtorrent, WebTorrent in Chromium" \
  pytest -q tests/interop --ignore=tests/interop/test_scaleout.py
# Gateway mode (--backend s3): the same suites again, with the server a gateway in front of a
# real S3 backend. The S3 suites against each of three backends (another seedbucket, a 3-node
# Garage cluster, moto's server); the torrent, webseed, seeder and tracker suites against one.
S3_SUITES="tests/interop/test_boto3.py tests/interop/test_awscli.py tests/interop/test_object_api.py tests/interop/test_access.py tests/interop/test_s3_exact_behaviour.py"
TORRENT_SUITES="tests/interop/test_get_object_torrent.py tests/interop/test_webseed.py tests/interop/test_seeder.py tests/interop/test_tracker.py tests/interop/test_peer_transports.py tests/interop/test_console.py"
# SSE-C is embedded-only (gateway mode answers NotImplemented: docs/deployment.md); the
# embedded run above covers it.
run_suite "gateway in front of seedbucket: S3, BitTorrent and console suites" \
  env SEEDBUCKET_TEST_BACKEND=seedbucket pytest -q $S3_SUITES $TORRENT_SUITES
# The GiB-sized tests (marker "large") run against the seedbucket backend only: they prove the
# streaming path, which is the same whatever the backend, and cost minutes each.
run_suite "gateway in front of Garage (3 nodes): S3 suites" \
  env SEEDBUCKET_TEST_BACKEND=garage pytest -q -m "not large" $S3_SUITES
# moto stores an empty body for a PUT sent as application/x-www-form-urlencoded (what urllib
# sends for the presigned PUT of that one test), with or without a gateway in front.
run_suite "gateway in front of moto: S3 suites" \
  env SEEDBUCKET_TEST_BACKEND=moto pytest -q -m "not large" -k "not test_presigned_get_override_and_put" $S3_SUITES
# Scale-out: three gateway nodes sharing one Redis, behind nginx
# (docs/examples/nginx-seedbucket.conf), over a 3-node Garage cluster.
run_suite "scale-out: 3 gateway nodes, nginx, redis, garage" pytest -q tests/interop/test_scaleout.py
if [ -f crates/torrent/tests/oracle/run.sh ]; then
  run_suite "torrent oracle (libtorrent)" bash crates/torrent/tests/oracle/run.sh
fi

echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
