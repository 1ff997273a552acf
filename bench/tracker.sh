#!/usr/bin/env bash
# Tracker benchmark: HTTP announces per second and latency, seedbucket's built-in tracker against
# opentracker (Debian's whitelist build) in the same run, same client (s3bench tracker-load, keep-
# alive where the server allows it; opentracker closes every connection), same info-hashes,
# 127.0.0.1. Prints a table with ratios and writes bench/out/tracker.md.
# Usage: bench/tracker.sh   (env: SECONDS_PER_RUN=10 CONCURRENCY=64 TORRENTS=8)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${SECONDS_PER_RUN:-10}
CONC=${CONCURRENCY:-64}
TORRENTS=${TORRENTS:-8}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-trbench.XXXXXX); chmod 755 "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
if ! command -v opentracker >/dev/null && [ "$(id -u)" = 0 ]; then apt-get install -y -qq opentracker >/dev/null; fi
command -v opentracker >/dev/null || { echo "opentracker is required (apt-get install opentracker)"; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
SB_PORT=$(port); OT_PORT=$(port); OT_UDP=$(port)
mkdir -p "$WORK/sb" "$WORK/ot"
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:0 --tracker-rate-limit 0 >/dev/null 2>&1 & PIDS+=($!)
wait_port $SB_PORT
"$BENCH" setup --endpoint http://127.0.0.1:$SB_PORT >/dev/null
HASHES=(); SB_TARGETS=(); OT_TARGETS=(); SB_UDP=(); OT_UDP_T=()
for i in $(seq "$TORRENTS"); do
  line=$("$BENCH" issue --endpoint http://127.0.0.1:$SB_PORT --key "t$i.bin")
  h=$(echo "$line" | field info_hash); HASHES+=("$h")
  SB_TARGETS+=(--target "$(echo "$line" | field announce)@$h")
  OT_TARGETS+=(--target "http://127.0.0.1:$OT_PORT/announce@$h")
  ann=$(echo "$line" | field announce)
  SB_UDP+=(--target "127.0.0.1:$SB_PORT@$h@/announce?${ann#*\?}")
  OT_UDP_T+=(--target "127.0.0.1:$OT_UDP@$h")
done
printf '%s\n' "${HASHES[@]}" > "$WORK/ot/whitelist.txt"
cat > "$WORK/ot.conf" <<CONF
listen.tcp 127.0.0.1:$OT_PORT
listen.udp 127.0.0.1:$OT_UDP
tracker.rootdir $WORK/ot
access.whitelist /whitelist.txt
tracker.user nobody
CONF
opentracker -f "$WORK/ot.conf" >/dev/null 2>&1 & PIDS+=($!)
wait_port $OT_PORT; sleep 1

echo "== seedbucket tracker"
SBL=$("$BENCH" tracker-load "${SB_TARGETS[@]}" --concurrency "$CONC" --seconds "$DUR"); echo "$SBL"
echo "== opentracker"
OTL=$("$BENCH" tracker-load "${OT_TARGETS[@]}" --concurrency "$CONC" --seconds "$DUR"); echo "$OTL"
echo "== seedbucket UDP tracker"
SBU=$("$BENCH" udp-load "${SB_UDP[@]}" --concurrency "$CONC" --seconds "$DUR"); echo "$SBU"
echo "== opentracker UDP"
OTU=$("$BENCH" udp-load "${OT_UDP_T[@]}" --concurrency "$CONC" --seconds "$DUR"); echo "$OTU"
{
  echo "| figure ($CONC clients, ${DUR}s each) | seedbucket | opentracker | ratio |"
  echo "|---|---|---|---|"
  echo "| HTTP announces/s | $(echo "$SBL" | field per_s) | $(echo "$OTL" | field per_s) | $(ratio $(echo "$SBL" | field per_s) $(echo "$OTL" | field per_s)) |"
  echo "| HTTP p50 ms | $(echo "$SBL" | field p50_ms) | $(echo "$OTL" | field p50_ms) | |"
  echo "| HTTP p99 ms | $(echo "$SBL" | field p99_ms) | $(echo "$OTL" | field p99_ms) | |"
  echo "| UDP announces/s | $(echo "$SBU" | field per_s) | $(echo "$OTU" | field per_s) | $(ratio $(echo "$SBU" | field per_s) $(echo "$OTU" | field per_s)) |"
  echo "| UDP p50 ms | $(echo "$SBU" | field p50_ms) | $(echo "$OTU" | field p50_ms) | |"
  echo "| UDP p99 ms | $(echo "$SBU" | field p99_ms) | $(echo "$OTU" | field p99_ms) | |"
} | tee "$OUT/tracker.md"
