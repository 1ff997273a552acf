#!/usr/bin/env bash
# Gateway benchmark, one run on 127.0.0.1, printing ratios and writing bench/out/gateway.md.
# A seedbucket in gateway mode (--backend s3) stores its objects in a second seedbucket (embedded
# mode, its own data dir) on the same machine; that backend is also the embedded reference:
#  1. SIZE_MB PUT and GET with s3bench (presigned, plain HTTP client) through the gateway and
#     straight against the backend (PUT rounds alternate between the two, then GETs after one
#     warm-up GET each);
#  2. aria2c downloads the same SIZE_MB of random bytes, uploaded public-read to both (boto3
#     upload_file, as bench/seeder.sh), from the gateway's seeder alone (webseed removed; the peer
#     found through the gateway's own tracker), from the gateway's webseed alone (announce
#     removed), and the same two ways from the embedded backend. Rounds alternate gateway/embedded.
# Every figure is the best of ROUNDS; all rounds are listed under the table. The gateway runs with
# RUST_LOG=warn; its log (and the backend's) is printed at the end when not empty.
# Usage: bench/gateway.sh   (env: SIZE_MB=1024 ROUNDS=3 PIECE_CACHE=256 [gateway --piece-cache, MiB]
#                            KEEP_WORK=1 keeps the work dir with the logs; needs .venv from ./scripts/test.sh)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
PIECE_CACHE=${PIECE_CACHE:-256}
KEEP_WORK=${KEEP_WORK:-0}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-gwbench.XXXXXX)
START=$(date +%s)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    for l in gw backend; do
      [ -s "$WORK/$l.log" ] && { echo "== last lines of the $l log ($WORK/$l.log)"; tail -n 30 "$WORK/$l.log" | sed 's/\x1b\[[0-9;]*m//g'; }
    done
  fi
  if [ "$KEEP_WORK" = 1 ] || [ "$rc" != 0 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

install() { # package binary
  command -v "$2" >/dev/null && return 0
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 || true
  command -v "$2" >/dev/null
}
install aria2 aria2c || { echo "aria2c is required"; exit 1; }
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv with boto3 and libtorrent)"; exit 1; }
PY=$ROOT/.venv/bin/python

echo "== building (release)"
cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
BUILT=$(date +%s)
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

# The gateway's root key (the bench client's) and the backend's root key (the gateway's service
# credential, also used for the direct runs) differ, as they would in a deployment.
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
BK_AK=BENCHBACKENDKEY00001 BK_SK=bench-backend-secret-000000000000000000000
BK_PORT=$(port); GW_PORT=$(port)
SEEDBUCKET_ROOT_ACCESS_KEY=$BK_AK SEEDBUCKET_ROOT_SECRET_KEY=$BK_SK RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/backend" --listen 127.0.0.1:$BK_PORT --peer-listen 127.0.0.1:0 >/dev/null 2>"$WORK/backend.log" & PIDS+=($!)
wait_port $BK_PORT
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
SEEDBUCKET_BACKEND_ACCESS_KEY=$BK_AK SEEDBUCKET_BACKEND_SECRET_KEY=$BK_SK RUST_LOG=warn \
  "$SB" serve --backend s3 --backend-endpoint http://127.0.0.1:$BK_PORT --backend-path-style --backend-region us-east-1 \
  --data-dir "$WORK/gw" --listen 127.0.0.1:$GW_PORT --peer-listen 127.0.0.1:0 --piece-cache "$PIECE_CACHE" \
  >/dev/null 2>"$WORK/gw.log" & PIDS+=($!); GW_PID=$!
wait_port $GW_PORT
GW=(--endpoint http://127.0.0.1:$GW_PORT)
BK=(--endpoint http://127.0.0.1:$BK_PORT --access-key $BK_AK --secret-key $BK_SK)

# -- 1. S3 PUT and GET -------------------------------------------------------------------------
declare -A R   # name -> space-separated rounds
s3op() { # name op args...: one s3bench run, its MB/s appended to R[name]
  local name=$1 op=$2 line; shift 2
  line=$("$BENCH" "$op" "$@") || { echo "$name: s3bench $op failed" >&2; exit 1; }
  echo "$name $line"
  R[$name]="${R[$name]:-} $(echo "$line" | field mb_per_s)"
}
echo "== 1. S3: ${SIZE_MB} MiB PUT and GET, gateway vs direct to the backend"
"$BENCH" setup "${GW[@]}" --bucket bench-gw >/dev/null
"$BENCH" setup "${BK[@]}" --bucket bench-direct >/dev/null
for i in $(seq "$ROUNDS"); do
  s3op gw.put large-put "${GW[@]}" --bucket bench-gw --key large --size $((SIZE_MB << 20))
  s3op direct.put large-put "${BK[@]}" --bucket bench-direct --key large --size $((SIZE_MB << 20))
done
"$BENCH" large-get "${GW[@]}" --bucket bench-gw --key large >/dev/null       # warm-up: the backend reads from page cache
"$BENCH" large-get "${BK[@]}" --bucket bench-direct --key large >/dev/null
for i in $(seq "$ROUNDS"); do
  s3op gw.get large-get "${GW[@]}" --bucket bench-gw --key large
  s3op direct.get large-get "${BK[@]}" --bucket bench-direct --key large
done

# -- 2. aria2c from the seeders and the webseeds -----------------------------------------------
echo "== 2. aria2c: ${SIZE_MB} MiB public object, seeder alone and webseed alone"
mkdir -p "$WORK/data"
head -c $((SIZE_MB << 20)) /dev/urandom > "$WORK/data/object.bin"
# Upload public-read to the gateway and to the backend itself; fetch each torrent and make its
# peer-only (url-list removed) and webseed-only (announce removed) variants.
"$PY" - "$GW_PORT" "$BK_PORT" "$BK_AK" "$BK_SK" "$WORK" <<'EOF'
import sys, time, boto3, botocore.config, libtorrent as lt
gw, bk, ak, sk, work = sys.argv[1:6]
cfg = botocore.config.Config(s3={"addressing_style": "path"})
targets = {
    "gw": boto3.client("s3", endpoint_url=f"http://127.0.0.1:{gw}", region_name="us-east-1", config=cfg),
    "emb": boto3.client("s3", endpoint_url=f"http://127.0.0.1:{bk}", region_name="us-east-1", config=cfg,
                        aws_access_key_id=ak, aws_secret_access_key=sk),
}
for name, s3 in targets.items():
    s3.create_bucket(Bucket=f"torrent-{name}")
    t = time.time()
    s3.upload_file(f"{work}/data/object.bin", f"torrent-{name}", "object.bin", ExtraArgs={"ACL": "public-read"})
    up = time.time() - t
    t = time.time()
    body = s3.get_object_torrent(Bucket=f"torrent-{name}", Key="object.bin")["Body"].read()
    tt = time.time() - t
    print(f"{name}: upload_file {up:.1f} s, first ?torrent {tt * 1000:.0f} ms", file=sys.stderr)
    meta = lt.bdecode(body)
    peer = dict(meta); peer.pop(b"url-list")
    web = dict(meta); web.pop(b"announce"); web.pop(b"announce-list", None)
    open(f"{work}/{name}-peer.torrent", "wb").write(lt.bencode(peer))
    open(f"{work}/{name}-web.torrent", "wb").write(lt.bencode(web))
EOF
# Warm the backend's page cache for both objects (the gateway's is read through the gateway).
"$BENCH" large-get "${GW[@]}" --bucket torrent-gw --key object.bin >/dev/null
"$BENCH" large-get "${BK[@]}" --bucket torrent-emb --key object.bin >/dev/null

C="--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false --interface=127.0.0.1
   --disable-ipv6=true --file-allocation=none --summary-interval=0 --console-log-level=error"
leech() { # name torrent: one aria2c download, its MB/s appended to R[name]; checks the bytes
  local dir="$WORK/dl-$1" s e mbs
  rm -rf "$dir"; mkdir -p "$dir"
  s=$(date +%s.%N)
  aria2c $C --dir="$dir" --seed-time=0 --listen-port="$(port)" --bt-stop-timeout=120 "$2" >"$WORK/aria2c-$1.log" 2>&1 || true
  e=$(date +%s.%N)
  cmp -s "$dir/object.bin" "$WORK/data/object.bin" || { echo "$1: wrong or missing bytes"; tail -n 5 "$WORK/aria2c-$1.log"; exit 1; }
  mbs=$(python3 -c "print(f'{$SIZE_MB*1.048576/($e-$s):.1f}')")
  echo "$1 round: $mbs MB/s"
  R[$1]="${R[$1]:-} $mbs"
  rm -rf "$dir"
}
for i in $(seq "$ROUNDS"); do
  leech gw.seeder "$WORK/gw-peer.torrent"
  leech emb.seeder "$WORK/emb-peer.torrent"
  leech gw.webseed "$WORK/gw-web.torrent"
  leech emb.webseed "$WORK/emb-web.torrent"
done
HWM=$(awk '/VmHWM/ {print $2}' /proc/$GW_PID/status)

# -- table ---------------------------------------------------------------------------------------
B() { best ${R[$1]}; }
row() { # label gateway-name reference-name reference-label
  local g r; g=$(B "$2"); r=$(B "$3")
  echo "| $1 | $g | $4 | $r | $(ratio "$g" "$r") |"
}
{
  echo "# Gateway benchmark ($(date -u +%F), ${SIZE_MB} MiB, best of $ROUNDS, gateway piece cache ${PIECE_CACHE} MiB)"
  echo
  echo "The backend is an embedded seedbucket on the same machine; it is also the embedded reference."
  echo
  echo "| figure | gateway | reference | reference value | ratio (gateway / reference) |"
  echo "|---|---|---|---|---|"
  row "${SIZE_MB} MiB PUT, MB/s (s3bench)" gw.put direct.put "PUT straight to the backend"
  row "${SIZE_MB} MiB GET, MB/s (s3bench)" gw.get direct.get "GET straight from the backend"
  row "aria2c from the seeder alone, MB/s" gw.seeder emb.seeder "embedded seeder"
  row "aria2c from the webseed alone, MB/s" gw.webseed emb.webseed "embedded webseed"
  row "aria2c from the webseed alone, MB/s" gw.webseed emb.seeder "embedded seeder"
  echo
  echo "Rounds (MB/s): PUT gateway${R[gw.put]}, direct${R[direct.put]}; GET gateway${R[gw.get]}, direct${R[direct.get]};"
  echo "seeder gateway${R[gw.seeder]}, embedded${R[emb.seeder]}; webseed gateway${R[gw.webseed]}, embedded${R[emb.webseed]}."
  echo
  echo "Gateway peak RSS (VmHWM) over the run: $((HWM / 1024)) MiB. Run time: $(( $(date +%s) - BUILT )) s after the build (which took $(( BUILT - START )) s)."
} | tee "$OUT/gateway.md"
for l in gw backend; do
  if [ -s "$WORK/$l.log" ]; then echo "== $l log ($(wc -l < "$WORK/$l.log") lines, first 40)"; head -n 40 "$WORK/$l.log" | sed 's/\x1b\[[0-9;]*m//g'; fi
done
