#!/usr/bin/env bash
# Torrent benchmark, one run on 127.0.0.1, printing ratios and writing bench/out/torrent.md:
#  1. PUT throughput with piece hashing on against the same server with it off;
#  2. GET ?torrent latency on a 5 GiB object against a 1 MiB one (it must not grow with size);
#  3. `seedbucket torrent create` on a 1 GiB file (hybrid: SHA-1 and SHA-256; and v1) against
#     `mktorrent -t 2` (v1), wall time.
# Usage: bench/torrent.sh   (env: LARGE_MB=1024 HUGE_MB=5120 ROUNDS=3)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
LARGE_MB=${LARGE_MB:-1024}
HUGE_MB=${HUGE_MB:-5120}
ROUNDS=${ROUNDS:-3}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-tbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
if ! command -v mktorrent >/dev/null && [ "$(id -u)" = 0 ]; then apt-get install -y -qq mktorrent >/dev/null; fi
command -v mktorrent >/dev/null || { echo "mktorrent is required (apt-get install mktorrent)"; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }
best() { sort -g | tail -1; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000

start() { # name hashing
  local p; p=$(port); mkdir -p "$WORK/$1"
  SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
    "$SB" serve --data-dir "$WORK/$1" --listen 127.0.0.1:$p --peer-listen 127.0.0.1:0 --piece-hashing "$2" >/dev/null 2>&1 & PIDS+=($!)
  wait_port $p; "$BENCH" setup --endpoint http://127.0.0.1:$p >/dev/null; echo $p
}
ON=$(start on on); OFF=$(start off off)

echo "== PUT ${LARGE_MB} MiB, piece hashing on vs off, best of $ROUNDS (alternating)"
on=(); off=()
for i in $(seq "$ROUNDS"); do
  on+=($("$BENCH" large-put --endpoint http://127.0.0.1:$ON --key l$i --size $((LARGE_MB << 20)) | field mb_per_s))
  off+=($("$BENCH" large-put --endpoint http://127.0.0.1:$OFF --key l$i --size $((LARGE_MB << 20)) | field mb_per_s))
done
PUT_ON=$(printf '%s\n' "${on[@]}" | best); PUT_OFF=$(printf '%s\n' "${off[@]}" | best)
echo "on: ${on[*]}  off: ${off[*]}"
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.1f}')" "$@"; }
MEAN_ON=$(mean "${on[@]}"); MEAN_OFF=$(mean "${off[@]}")

echo "== ?torrent latency: ${HUGE_MB} MiB object vs 1 MiB object"
"$BENCH" large-put --endpoint http://127.0.0.1:$ON --key huge --size $((HUGE_MB << 20)) >/dev/null
"$BENCH" large-put --endpoint http://127.0.0.1:$ON --key small --size $((1 << 20)) >/dev/null
HUGE=$("$BENCH" torrent --endpoint http://127.0.0.1:$ON --key huge --n 50); echo "huge  $HUGE"
SMALL=$("$BENCH" torrent --endpoint http://127.0.0.1:$ON --key small --n 50); echo "small $SMALL"

echo "== torrent create on a ${LARGE_MB} MiB file vs mktorrent -t 2, best of $ROUNDS"
head -c $((LARGE_MB << 20)) /dev/urandom > "$WORK/file.bin"
cat "$WORK/file.bin" > /dev/null   # page cache for everyone
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print(f'{$e-$s:.3f}')"; }
least() { sort -g | head -1; }
mk=(); hy=(); v1=()
for i in $(seq "$ROUNDS"); do   # alternating, best of $ROUNDS: the machine's speed drifts
  rm -f "$WORK/mk.torrent"
  mk+=($(timeit mktorrent -t 2 -l 20 -o "$WORK/mk.torrent" "$WORK/file.bin"))
  hy+=($(timeit "$SB" torrent create "$WORK/file.bin" --format hybrid --piece-length 1048576 --quiet -o "$WORK/hy.torrent"))
  v1+=($(timeit "$SB" torrent create "$WORK/file.bin" --format v1 --piece-length 1048576 --quiet -o "$WORK/v1.torrent"))
done
echo "mktorrent ${mk[*]}  seedbucket hybrid ${hy[*]}  seedbucket v1 ${v1[*]}"
MK=$(printf '%s\n' "${mk[@]}" | least); HY=$(printf '%s\n' "${hy[@]}" | least); V1=$(printf '%s\n' "${v1[@]}" | least)
{
  echo "| figure | seedbucket | peer | peer value | ratio |"
  echo "|---|---|---|---|---|"
  echo "| ${LARGE_MB} MiB PUT MB/s, hashing on vs off, best of $ROUNDS | $PUT_ON | hashing off | $PUT_OFF | $(ratio $PUT_ON $PUT_OFF) |"
  echo "| ${LARGE_MB} MiB PUT MB/s, hashing on vs off, mean of $ROUNDS | $MEAN_ON | hashing off | $MEAN_OFF | $(ratio $MEAN_ON $MEAN_OFF) |"
  echo "| ?torrent p50 ms, ${HUGE_MB} MiB vs 1 MiB object | $(echo "$HUGE" | field p50_ms) | 1 MiB object | $(echo "$SMALL" | field p50_ms) | $(ratio $(echo "$HUGE" | field p50_ms) $(echo "$SMALL" | field p50_ms)) |"
  echo "| ?torrent p99 ms, ${HUGE_MB} MiB object | $(echo "$HUGE" | field p99_ms) | | | |"
  echo "| torrent create hybrid, s (${LARGE_MB} MiB, best of $ROUNDS) | $HY | mktorrent -t 2 (v1) | $MK | $(ratio $HY $MK) |"
  echo "| torrent create v1, s (${LARGE_MB} MiB, best of $ROUNDS) | $V1 | mktorrent -t 2 (v1) | $MK | $(ratio $V1 $MK) |"
} | tee "$OUT/torrent.md"
