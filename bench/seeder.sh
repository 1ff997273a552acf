#!/usr/bin/env bash
# Seeder benchmark, one run on 127.0.0.1, printing ratios and writing bench/out/seeder.md.
# The same leecher (aria2c) downloads the same SIZE_MB object four ways:
#  1. from seedbucket's seeder (peer wire; the torrent's webseed removed);
#  2. from aria2c seeding the file (--seed-ratio=0.0), found through a tracker;
#  3. from qbittorrent-nox seeding the file (skipped, and said so, when it cannot be installed);
#  4. from seedbucket's webseed alone, and from nginx serving the file as a webseed;
#  5. peer transports, with libtorrent as the leecher (bench/peer_transports.py): time to the
#     first block at libtorrent's defaults against a seedbucket with --seed-utp off
#     --seed-encryption off (plain TCP only), and throughput over uTP and RC4-encrypted TCP
#     against plain TCP.
# Peer seeders 2 and 3 use a second seedbucket as a plain open tracker (its own seeder off) and a
# torrent of the same bytes made by `seedbucket torrent create`, so only they can serve.
# LINK (for example LINK=1gbit) runs it all in a network namespace made for the run, whose
# loopback is shaped to that rate (tc tbf), as if the leecher and the seeders were hosts on such a
# link: on plain loopback every figure is bound by the two cores the leecher and the seeder share.
# Needs root (ip netns, tc); writes bench/out/seeder-<LINK>.md.
# Usage: bench/seeder.sh   (env: SIZE_MB=1024 ROUNDS=2 LINK=)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-2}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-sbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

install() { # package binary
  command -v "$2" >/dev/null && return 0
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 || true
  command -v "$2" >/dev/null
}
install aria2 aria2c || { echo "aria2c is required"; exit 1; }
install nginx nginx || { echo "nginx is required"; exit 1; }
HAVE_QBT=1; install qbittorrent-nox qbittorrent-nox || HAVE_QBT=0
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv with boto3)"; exit 1; }
PY=$ROOT/.venv/bin/python

cargo build --release -q -p seedbucket --bin seedbucket
if [ -n "${LINK:-}" ] && [ -z "${SEEDBUCKET_BENCH_NETNS:-}" ]; then
  NS=sbseed$$
  ip netns add "$NS" || { echo "LINK needs root (ip netns add)"; exit 1; }
  trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"' EXIT
  ip netns exec "$NS" ip link set lo up
  ip netns exec "$NS" tc qdisc add dev lo root tbf rate "$LINK" burst 256kb latency 50ms
  echo "== in network namespace $NS, loopback shaped to $LINK"
  rc=0; SEEDBUCKET_BENCH_NETNS=$NS ip netns exec "$NS" "$ROOT/bench/seeder.sh" || rc=$?
  exit "$rc"
fi
SB=$ROOT/target/release/seedbucket
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
C="--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false --file-allocation=none --summary-interval=0 --console-log-level=error"

echo "== data: ${SIZE_MB} MiB"
mkdir -p "$WORK/data"
head -c $((SIZE_MB << 20)) /dev/urandom > "$WORK/data/object.bin"

# seedbucket with its seeder, and a second one as a plain tracker for the reference seeders.
SB_PORT=$(port); PEER_PORT=$(port); TR_PORT=$(port)
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:$PEER_PORT >/dev/null 2>"$WORK/sb.log" & PIDS+=($!)
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/tr" --listen 127.0.0.1:$TR_PORT --peer-listen off --open-tracker --tracker-rate-limit 0 >/dev/null 2>&1 & PIDS+=($!)
wait_port $SB_PORT; wait_port $TR_PORT

# Upload (public-read: an open torrent) to the seedbucket on port $1 and fetch the torrent;
# write its peer-only and webseed-only variants as $WORK/$2-peer.torrent and $2-web.torrent.
upload_and_torrents() {
  "$PY" - "$1" "$WORK" "$2" <<'EOF'
import sys, boto3, botocore.config, libtorrent as lt
port, work, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="bench")
s3.upload_file(f"{work}/data/object.bin", "bench", "object.bin", ExtraArgs={"ACL": "public-read"})
meta = lt.bdecode(s3.get_object_torrent(Bucket="bench", Key="object.bin")["Body"].read())
peer = dict(meta); peer.pop(b"url-list")
web = dict(meta); web.pop(b"announce"); web.pop(b"announce-list", None)
open(f"{work}/{prefix}-peer.torrent", "wb").write(lt.bencode(peer))
open(f"{work}/{prefix}-web.torrent", "wb").write(lt.bencode(web))
EOF
}
upload_and_torrents "$SB_PORT" sb
"$SB" torrent create "$WORK/data/object.bin" --announce "http://127.0.0.1:$TR_PORT/announce" -o "$WORK/ref-peer.torrent" --quiet
NG_PORT=$(port)
mkdir -p "$WORK/nginx/logs"
NGX_USER=""; [ "$(id -u)" = 0 ] && NGX_USER="user root;"   # workers must read the 0700 work dir
cat > "$WORK/nginx/nginx.conf" <<EOF
$NGX_USER worker_processes 2; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log; daemon off;
events { worker_connections 1024; }
http { access_log off; sendfile on; client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$NG_PORT; root $WORK/data; } }
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & PIDS+=($!)
wait_port $NG_PORT
"$SB" torrent create "$WORK/data/object.bin" --webseed "http://127.0.0.1:$NG_PORT/object.bin" -o "$WORK/ref-web.torrent" --quiet
cat "$WORK/data/object.bin" > /dev/null   # page cache for every seeder

# One aria2c download; prints MB/s and checks the bytes.
leech() { # torrent label
  local dir="$WORK/dl-$2" s e
  rm -rf "$dir"; mkdir -p "$dir"
  s=$(date +%s.%N)
  aria2c $C --dir="$dir" --seed-time=0 --listen-port="$(port)" --bt-stop-timeout=120 "$1" >/dev/null 2>&1 || true
  e=$(date +%s.%N)
  cmp -s "$dir/object.bin" "$WORK/data/object.bin" || { echo "$2: wrong or missing bytes" >&2; exit 1; }
  python3 -c "print(f'{$SIZE_MB*1.048576/($e-$s):.1f}')"
  rm -rf "$dir"
}
best() { sort -g | tail -1; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
run() { # torrent label -> best MB/s of ROUNDS
  local r=() i
  for i in $(seq "$ROUNDS"); do r+=($(leech "$1" "$2")); done
  echo "$2: ${r[*]} MB/s" >&2
  printf '%s\n' "${r[@]}" | best
}

echo "== 1. seedbucket seeder (peer wire)"
SBP=$(run "$WORK/sb-peer.torrent" seedbucket-seeder)

echo "== 2. aria2c seeder"
aria2c $C --dir="$WORK/data" --bt-seed-unverified=true --seed-ratio=0.0 --listen-port="$(port)" "$WORK/ref-peer.torrent" >/dev/null 2>&1 & ARIA_PID=$!; PIDS+=($ARIA_PID)
sleep 3
ARIA=$(run "$WORK/ref-peer.torrent" aria2c-seeder)
kill $ARIA_PID 2>/dev/null || true; sleep 1

QBT=""
if [ "$HAVE_QBT" = 1 ]; then
  echo "== 3. qbittorrent-nox seeder"
  QP=$(port); QW=$(port); Q="$WORK/qbt"; mkdir -p "$Q/qBittorrent/config"
  cat > "$Q/qBittorrent/config/qBittorrent.conf" <<EOF
[LegalNotice]
Accepted=true
[BitTorrent]
Session\DHTEnabled=false
Session\LSDEnabled=false
Session\PeXEnabled=false
Session\Port=$QP
Session\Interface=lo
Session\InterfaceName=lo
[Preferences]
WebUI\Port=$QW
WebUI\Address=127.0.0.1
WebUI\LocalHostAuth=false
WebUI\CSRFProtection=false
EOF
  qbittorrent-nox --profile="$Q" --webui-port=$QW >/dev/null 2>&1 & PIDS+=($!)
  wait_port $QW
  curl -s -F torrents=@"$WORK/ref-peer.torrent" -F savepath="$WORK/data" -F skip_checking=true \
    "http://127.0.0.1:$QW/api/v2/torrents/add" >/dev/null
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$QW/api/v2/torrents/info" | grep -q '"state":"\(stalledUP\|uploading\)"' && break; sleep 0.2; done
  QBT=$(run "$WORK/ref-peer.torrent" qbittorrent-seeder)
else
  echo "== 3. qbittorrent-nox: not installed here (needs root for apt-get), skipped"
fi

echo "== 4. webseeds: seedbucket vs nginx"
SBW=$(run "$WORK/sb-web.torrent" seedbucket-webseed)
NGW=$(run "$WORK/ref-web.torrent" nginx-webseed)

echo "== 5. peer transports (libtorrent leecher)"
OLD_PORT=$(port); OLD_PEER=$(port)
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/old" --listen 127.0.0.1:$OLD_PORT --peer-listen 127.0.0.1:$OLD_PEER \
  --seed-utp off --seed-encryption off >/dev/null 2>&1 & PIDS+=($!)
wait_port $OLD_PORT
upload_and_torrents "$OLD_PORT" old
TRANSPORTS=$("$PY" bench/peer_transports.py "$ROUNDS" "$WORK/sb-peer.torrent" "$WORK/old-peer.torrent" "$WORK/data")
echo "$TRANSPORTS" >&2
tget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$TRANSPORTS" "$1"; }

{
  echo "# Seeder benchmark ($(date -u +%F), ${SIZE_MB} MiB, aria2c leecher, best of $ROUNDS${LINK:+, loopback shaped to $LINK})"
  echo
  echo "| source | MB/s | seedbucket / it |"
  echo "|---|---|---|"
  echo "| seedbucket seeder | $SBP | |"
  echo "| aria2c seeder | $ARIA | $(ratio "$SBP" "$ARIA") |"
  [ -n "$QBT" ] && echo "| qbittorrent-nox seeder | $QBT | $(ratio "$SBP" "$QBT") |"
  echo "| seedbucket webseed | $SBW | |"
  echo "| nginx webseed | $NGW | $(ratio "$SBW" "$NGW") |"
  echo
  echo "Peer transports, libtorrent $("$PY" -c 'import libtorrent; print(libtorrent.__version__)') as the leecher:"
  echo
  echo "| figure | seedbucket | reference | ratio |"
  echo "|---|---|---|---|"
  echo "| time to first block at libtorrent's defaults, re-dialling (median, s) | $(tget ttfb_now_s) | $(tget ttfb_before_s) with uTP and encryption off | |"
  echo "| uTP alone, MB/s | $(tget utp_mb_s) | $(tget tcp_mb_s) plain TCP | $(ratio "$(tget utp_mb_s)" "$(tget tcp_mb_s)") |"
  echo "| RC4-encrypted TCP, MB/s | $(tget rc4_tcp_mb_s) | $(tget tcp_mb_s) plain TCP | $(ratio "$(tget rc4_tcp_mb_s)" "$(tget tcp_mb_s)") |"
  echo "| libtorrent seeding instead: uTP alone, MB/s | $(tget libtorrent_utp_mb_s) | $(tget libtorrent_tcp_mb_s) plain TCP | $(ratio "$(tget libtorrent_utp_mb_s)" "$(tget libtorrent_tcp_mb_s)") |"
  echo "| libtorrent seeding instead: RC4-encrypted TCP, MB/s | $(tget libtorrent_rc4_tcp_mb_s) | $(tget libtorrent_tcp_mb_s) plain TCP | $(ratio "$(tget libtorrent_rc4_tcp_mb_s)" "$(tget libtorrent_tcp_mb_s)") |"
  echo "| seedbucket / libtorrent seeding, uTP | $(tget utp_mb_s) | $(tget libtorrent_utp_mb_s) | $(ratio "$(tget utp_mb_s)" "$(tget libtorrent_utp_mb_s)") |"
  echo "| seedbucket / libtorrent seeding, RC4 TCP | $(tget rc4_tcp_mb_s) | $(tget libtorrent_rc4_tcp_mb_s) | $(ratio "$(tget rc4_tcp_mb_s)" "$(tget libtorrent_rc4_tcp_mb_s)") |"
} | tee "$OUT/seeder${LINK:+-$LINK}.md"
