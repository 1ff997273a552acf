#!/usr/bin/env bash
# S3 benchmark: seedbucket against s3s-fs (the same S3 library, files on disk, no fsync) and
# nginx (plain file GET), in one run, on 127.0.0.1. Prints a table with ratios and writes it to
# bench/out/s3.md. Usage: bench/s3.sh   (env: LARGE_MB=1024 SMALL_SECONDS=10 CONCURRENCY=32 HUGE_MB=5120)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
LARGE_MB=${LARGE_MB:-1024}
HUGE_MB=${HUGE_MB:-5120}
SMALL_SECONDS=${SMALL_SECONDS:-10}
CONCURRENCY=${CONCURRENCY:-32}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-bench.XXXXXX); chmod 755 "$WORK"   # nginx workers read www/
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building (release)"
cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
S3SFS=$ROOT/bench/.tools/bin/s3s-fs
if [ ! -x "$S3SFS" ]; then
  echo "== installing s3s-fs 0.14.1 (the newest that builds on Rust 1.95)"
  cargo install -q s3s-fs --version 0.14.1 --features binary --root "$ROOT/bench/.tools"
fi
if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq nginx-light >/dev/null || apt-get install -y -qq nginx >/dev/null; fi
fi
command -v nginx >/dev/null || { echo "nginx is required (apt-get install nginx-light)"; exit 1; }
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; fi
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open"; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }

export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
SB_PORT=$(port); FS_PORT=$(port); NG_PORT=$(port)
mkdir -p "$WORK/sb" "$WORK/fs" "$WORK/www"
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:0 >/dev/null 2>"$WORK/sb.log" & PIDS+=($!); SB_PID=$!
"$S3SFS" --host 127.0.0.1 --port $FS_PORT --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/fs" >/dev/null 2>&1 & PIDS+=($!)
cat > "$WORK/nginx.conf" <<NGX
worker_processes 2; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:$NG_PORT; root $WORK/www; } }
NGX
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port $SB_PORT; wait_port $FS_PORT; wait_port $NG_PORT

declare -A R
run_s3() { # name port
  local name=$1 ep=http://127.0.0.1:$2 line
  "$BENCH" setup --endpoint "$ep" >/dev/null
  line=$("$BENCH" large-put --endpoint "$ep" --key large --size $((LARGE_MB << 20))); echo "$name $line"
  R[$name.put]=$(echo "$line" | field mb_per_s)
  "$BENCH" large-get --endpoint "$ep" --key large >/dev/null   # warm-up: every server reads from page cache
  line=$("$BENCH" large-get --endpoint "$ep" --key large); echo "$name $line"
  R[$name.get]=$(echo "$line" | field mb_per_s)
  line=$("$BENCH" small --endpoint "$ep" --size 4096 --concurrency "$CONCURRENCY" --seconds "$SMALL_SECONDS"); echo "$name $line"
  R[$name.sput]=$(echo "$line" | field put_ops_per_s); R[$name.sget]=$(echo "$line" | field get_ops_per_s)
}
echo "== seedbucket"; run_s3 seedbucket $SB_PORT
echo "== s3s-fs";    run_s3 s3sfs $FS_PORT
echo "== nginx (GET of the same ${LARGE_MB} MiB)"
head -c $((LARGE_MB << 20)) /dev/zero | tr '\0' 'Z' > "$WORK/www/large"
"$BENCH" large-get --url "http://127.0.0.1:$NG_PORT/large" >/dev/null
line=$("$BENCH" large-get --url "http://127.0.0.1:$NG_PORT/large"); echo "nginx $line"
R[nginx.get]=$(echo "$line" | field mb_per_s)

# The same load tool for both servers (wrk, keep-alive, one URL): a 4 KiB GET with
# $CONCURRENCY connections, and a ${LARGE_MB} MiB GET on one connection. seedbucket's URLs are
# presigned (SigV4 query auth checked on every request); nginx serves the same bytes as files.
wrk_rps() { wrk -t2 -c"$2" -d"$3"s "$1" | awk '/Requests\/sec/ {print $2}'; }
echo "== wrk: 4 KiB GET, seedbucket (presigned) and nginx"
"$BENCH" large-put --endpoint http://127.0.0.1:$SB_PORT --key small4k --size 4096 >/dev/null
head -c 4096 /dev/zero | tr '\0' 'Z' > "$WORK/www/small4k"
SMALL_URL=$("$BENCH" presign-get --endpoint http://127.0.0.1:$SB_PORT --key small4k)
wrk_rps "$SMALL_URL" "$CONCURRENCY" 2 >/dev/null   # warm-up
R[wrk.sb.small]=$(wrk_rps "$SMALL_URL" "$CONCURRENCY" "$SMALL_SECONDS")
R[wrk.ng.small]=$(wrk_rps "http://127.0.0.1:$NG_PORT/small4k" "$CONCURRENCY" "$SMALL_SECONDS")
echo "seedbucket ${R[wrk.sb.small]} req/s, nginx ${R[wrk.ng.small]} req/s"
echo "== wrk: ${LARGE_MB} MiB GET on one connection, seedbucket (presigned) and nginx"
LARGE_URL=$("$BENCH" presign-get --endpoint http://127.0.0.1:$SB_PORT --key large)
large_mbps() { wrk -t1 -c1 -d"$SMALL_SECONDS"s "$1" | awk -v mb="$LARGE_MB" '/Requests\/sec/ {printf "%.1f", $2 * mb * 1048576 / 1e6}'; }
R[wrk.sb.large]=$(large_mbps "$LARGE_URL")
R[wrk.ng.large]=$(large_mbps "http://127.0.0.1:$NG_PORT/large")
echo "seedbucket ${R[wrk.sb.large]} MB/s, nginx ${R[wrk.ng.large]} MB/s"

echo "== seedbucket memory over a ${HUGE_MB} MiB PUT and GET"
"$BENCH" large-put --endpoint http://127.0.0.1:$SB_PORT --key huge --size $((HUGE_MB << 20))
"$BENCH" large-get --endpoint http://127.0.0.1:$SB_PORT --key huge
HWM=$(awk '/VmHWM/ {print $2}' /proc/$SB_PID/status)

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
{
  echo "| figure | seedbucket | peer | peer value | ratio (seedbucket / peer) |"
  echo "|---|---|---|---|---|"
  echo "| ${LARGE_MB} MiB PUT, MB/s | ${R[seedbucket.put]} | s3s-fs | ${R[s3sfs.put]} | $(ratio ${R[seedbucket.put]} ${R[s3sfs.put]}) |"
  echo "| ${LARGE_MB} MiB GET, MB/s | ${R[seedbucket.get]} | s3s-fs | ${R[s3sfs.get]} | $(ratio ${R[seedbucket.get]} ${R[s3sfs.get]}) |"
  echo "| ${LARGE_MB} MiB GET, MB/s | ${R[seedbucket.get]} | nginx | ${R[nginx.get]} | $(ratio ${R[seedbucket.get]} ${R[nginx.get]}) |"
  echo "| 4 KiB PUT, ops/s (c=$CONCURRENCY) | ${R[seedbucket.sput]} | s3s-fs | ${R[s3sfs.sput]} | $(ratio ${R[seedbucket.sput]} ${R[s3sfs.sput]}) |"
  echo "| 4 KiB GET, ops/s (c=$CONCURRENCY) | ${R[seedbucket.sget]} | s3s-fs | ${R[s3sfs.sget]} | $(ratio ${R[seedbucket.sget]} ${R[s3sfs.sget]}) |"
  echo "| 4 KiB presigned GET, req/s (wrk, c=$CONCURRENCY) | ${R[wrk.sb.small]} | nginx | ${R[wrk.ng.small]} | $(ratio ${R[wrk.sb.small]} ${R[wrk.ng.small]}) |"
  echo "| ${LARGE_MB} MiB presigned GET, MB/s (wrk, c=1) | ${R[wrk.sb.large]} | nginx | ${R[wrk.ng.large]} | $(ratio ${R[wrk.sb.large]} ${R[wrk.ng.large]}) |"
  echo
  echo "seedbucket peak RSS (VmHWM) over the whole run including a ${HUGE_MB} MiB PUT and GET: $((HWM / 1024)) MiB"
} | tee "$OUT/s3.md"
