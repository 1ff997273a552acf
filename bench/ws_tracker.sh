#!/usr/bin/env bash
# WebSocket tracker benchmark (browsers' tracker, WebTorrent's protocol): announces per second and
# latency, one run on 127.0.0.1, the same client for every server (s3bench ws-load: CONCURRENCY
# sockets, each from its own loopback address, 127.0.0.2 and up, announcing for 32 peers of its
# own in turn without offers, each announce waiting for its reply). Servers:
#  - seedbucket embedded: its WebSocket tracker (ws://.../announce), against
#  - aquatic_ws 0.9 (crates.io, built into bench/.tools on first use; access list in "allow" mode
#    with the same info-hashes, plain WebSocket), and
#  - seedbucket's own HTTP tracker on the same torrents (s3bench tracker-load, same workload).
# Prints a table with ratios and writes bench/out/ws_tracker.md.
# Usage: bench/ws_tracker.sh   (env: SECONDS_PER_RUN=10 CONCURRENCY=64 TORRENTS=8 AQUATIC=0 skips aquatic)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${SECONDS_PER_RUN:-10}
CONC=${CONCURRENCY:-64}
TORRENTS=${TORRENTS:-8}
AQUATIC=${AQUATIC:-1}
AQ_VERSION=0.9.0
TOOLS=$ROOT/bench/.tools
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-wsbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building (release)"
cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
NOTE=""
if [ "$AQUATIC" = 1 ] && [ ! -x "$TOOLS/bin/aquatic_ws" ]; then
  echo "== cargo install aquatic_ws $AQ_VERSION into bench/.tools (takes minutes on 2 cores)"
  # Not --locked, as for aquatic_http/udp in bench/tracker.sh (its lock file pins a metrics
  # version Rust 1.95 rejects).
  cargo install -q aquatic_ws --version "$AQ_VERSION" --root "$TOOLS" >"$WORK/install.log" 2>&1 \
    || NOTE="cargo install aquatic_ws failed: $(grep -m1 '^error' "$WORK/install.log" || tail -n1 "$WORK/install.log")"
fi
[ "$AQUATIC" = 1 ] || NOTE="aquatic_ws skipped (AQUATIC=0)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open"; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }
ratio() { python3 -c "a,b='$1','$2'; print(f'{float(a)/float(b):.2f}' if a and b else 'n/a')"; }

export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
SB_PORT=$(port); AQ_PORT=$(port)
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:0 --tracker-rate-limit 0 \
  >/dev/null 2>"$WORK/sb.log" & PIDS+=($!)
wait_port $SB_PORT

# Open torrents (public objects): the WebSocket URL then needs no token.
"$BENCH" setup --endpoint http://127.0.0.1:$SB_PORT >/dev/null
HASHES=(); WS_T=(); HTTP_T=(); AQ_T=()
for i in $(seq "$TORRENTS"); do
  line=$("$BENCH" issue --public --endpoint http://127.0.0.1:$SB_PORT --key "ws$i.bin")
  h=$(echo "$line" | field info_hash); ann=$(echo "$line" | field announce)
  HASHES+=("$h")
  WS_T+=(--target "ws://127.0.0.1:$SB_PORT/announce@$h")
  HTTP_T+=(--target "$ann@$h")
  AQ_T+=(--target "ws://127.0.0.1:$AQ_PORT/@$h")
done

if [ -z "$NOTE" ]; then
  printf '%s\n' "${HASHES[@]}" > "$WORK/access-list.txt"
  "$TOOLS/bin/aquatic_ws" -p > "$WORK/aquatic_ws.toml"
  python3 - "$WORK/aquatic_ws.toml" "127.0.0.1:$AQ_PORT" "$WORK/access-list.txt" <<'EOF' || NOTE="aquatic_ws's printed config has changed (see above)"
import os, re, sys
path, addr, acl = sys.argv[1:4]
s = open(path).read()
def sub(key, value):
    global s
    s, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", s, count=1)
    if n == 0:
        sys.exit(f"{path}: no '{key} =' line in the printed config")
cores = os.cpu_count() or 1
sub("address", f'"{addr}"')
sub("mode", '"allow"')
sub("path", f'"{acl}"')
sub("socket_workers", str(max(1, cores // 2)))
sub("swarm_workers", str(max(1, cores - cores // 2)))
sub("enable_tls", "false")
open(path, "w").write(s)
EOF
fi
if [ -z "$NOTE" ]; then
  "$TOOLS/bin/aquatic_ws" -c "$WORK/aquatic_ws.toml" >"$WORK/aquatic_ws.log" 2>&1 & PIDS+=($!)
  sleep 1
  kill -0 "${PIDS[-1]}" 2>/dev/null || NOTE="aquatic_ws exits at start: $(tail -n 3 "$WORK/aquatic_ws.log" | tr '\n' ' ')"
fi

declare -A L
run() { # name command targets...
  local name=$1 cmd=$2; shift 2
  echo "== $name"
  if L[$name]=$("$BENCH" "$cmd" "$@" --concurrency "$CONC" --seconds "$DUR" 2>"$WORK/err-$name.txt"); then
    echo "${L[$name]}"
  else
    L[$name]=""; echo "failed: $(head -n 3 "$WORK/err-$name.txt" | tr '\n' ' ')"
  fi
}
run sb_ws ws-load "${WS_T[@]}"
[ -z "$NOTE" ] && run aq_ws ws-load "${AQ_T[@]}"
run sb_http tracker-load "${HTTP_T[@]}"

v() { echo "${L[$1]:-}" | field "$2"; }
cell() { local x; x=$(v "$@"); echo "${x:-n/a}"; }
{
  echo "# WebSocket tracker benchmark ($(date -u +%F), $CONC sockets/clients, ${DUR}s per run, $TORRENTS info-hashes)"
  echo
  echo "| server | announces/s | p50 ms | p99 ms |"
  echo "|---|---|---|---|"
  echo "| seedbucket WebSocket tracker | $(cell sb_ws per_s) | $(cell sb_ws p50_ms) | $(cell sb_ws p99_ms) |"
  echo "| aquatic_ws $AQ_VERSION (access list) | $(cell aq_ws per_s) | $(cell aq_ws p50_ms) | $(cell aq_ws p99_ms) |"
  echo "| seedbucket HTTP tracker (same torrents) | $(cell sb_http per_s) | $(cell sb_http p50_ms) | $(cell sb_http p99_ms) |"
  echo
  echo "| ratio | value |"
  echo "|---|---|"
  echo "| seedbucket WebSocket / aquatic_ws | $(ratio "$(v sb_ws per_s)" "$(v aq_ws per_s)") |"
  echo "| seedbucket WebSocket / seedbucket HTTP | $(ratio "$(v sb_ws per_s)" "$(v sb_http per_s)") |"
  [ -z "$NOTE" ] || { echo; echo "No aquatic_ws figure: $NOTE"; }
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/ws_tracker.md"
