#!/usr/bin/env bash
# Scale-out benchmark: one gateway node against three, one run on 127.0.0.1, printing ratios and
# writing bench/out/scaleout.md.
#
# The backend is one embedded seedbucket (its own port and data dir, seeder off); one redis-server
# (our own, free port, no persistence). Gateway nodes A, B, C run with --backend s3 over that
# backend, the same --redis, the same --public-url (node A's address: every torrent's announce URL
# is node A's tracker, and every live node's seeder is in its peer lists), their own seeder
# (--peer-listen 127.0.0.1:0) capped at RATE_MB MB/s each (--seed-rate-limit), and their own
# --admin-listen for /metrics.
#
#  1. node A alone: a SIZE_MB public object (random bytes) is PUT through A, its torrent fetched,
#     the webseed (url-list) removed; LEECHERS libtorrent sessions (DHT, LSD, UPnP, NAT-PMP off)
#     start together and find the seeders through the tracker only;
#  2. B and C started; once Redis lists three live nodes (sb:nodes, heartbeats every 2 s) and one
#     more heartbeat has passed, the same with a second object.
# Reported per node: bytes uploaded by its seeder and its webseed (seedbucket_uploaded_bytes_total
# {via="peer"} / {via="webseed"}, differences over the phase) and, counted on the leechers' side,
# the bytes they received from each node's seeder; the time to the last finish; the ratios.
# The cap is low (4 MB/s per node by default) so that the seeders, not the 2 cores, set the pace:
# with 20 MB/s per node the three-node swarm moved about 75 MB/s between the leechers on this
# machine and finished only 1.15x faster, CPU-bound; at 4 MB/s each phase runs its seeders near
# their cap (the table shows the rate against the cap).
# Usage: bench/scaleout.sh   (env: SIZE_MB=128 LEECHERS=8 RATE_MB=4 [per node] TIMEOUT=600 [per phase, s]
#                             KEEP_WORK=1 keeps the work dir with the logs; needs .venv from ./scripts/test.sh)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-128} LEECHERS=${LEECHERS:-8} RATE_MB=${RATE_MB:-4} TIMEOUT=${TIMEOUT:-600}
KEEP_WORK=${KEEP_WORK:-0}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/seedbucket-scaleout.XXXXXX)
START=$(date +%s)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    for l in backend redis node-a node-b node-c; do
      [ -s "$WORK/$l.log" ] && { echo "== last lines of $WORK/$l.log"; tail -n 20 "$WORK/$l.log" | sed 's/\x1b\[[0-9;]*m//g'; }
    done
  fi
  if [ "$KEEP_WORK" = 1 ] || [ "$rc" != 0 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv with boto3 and libtorrent)"; exit 1; }
PY=$ROOT/.venv/bin/python
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1 || true; fi
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "redis-server and redis-cli are required (apt-get install redis-server)"; exit 1; }
echo "== building (release)"
cargo build --release -q -p seedbucket --bin seedbucket
BUILT=$(date +%s)
SB=$ROOT/target/release/seedbucket
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
wait_health() { for _ in $(seq 300); do curl -fs "http://127.0.0.1:$1/_seedbucket/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no health on port $1"; exit 1; }

export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
BK_AK=BENCHBACKENDKEY00001 BK_SK=bench-backend-secret-000000000000000000000
BK_PORT=$(port); RD_PORT=$(port)
declare -A S3 ADMIN
for n in a b c; do S3[$n]=$(port); ADMIN[$n]=$(port); done
PUBLIC=http://127.0.0.1:${S3[a]}
mkdir -p "$WORK/redis"

SEEDBUCKET_ROOT_ACCESS_KEY=$BK_AK SEEDBUCKET_ROOT_SECRET_KEY=$BK_SK RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/backend" --listen 127.0.0.1:$BK_PORT --peer-listen off \
  --torrent-max-size $(( (SIZE_MB + 1) << 20 )) >/dev/null 2>"$WORK/backend.log" & PIDS+=($!)
redis-server --port "$RD_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 & PIDS+=($!)
wait_port $BK_PORT; wait_port $RD_PORT
node() { # a|b|c: start a gateway node and wait for its health check
  SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
  SEEDBUCKET_BACKEND_ACCESS_KEY=$BK_AK SEEDBUCKET_BACKEND_SECRET_KEY=$BK_SK RUST_LOG=warn,seedbucket::app=info NO_COLOR=1 \
    "$SB" serve --backend s3 --backend-endpoint http://127.0.0.1:$BK_PORT --backend-path-style --backend-region us-east-1 \
    --redis "redis://127.0.0.1:$RD_PORT/" --public-url "$PUBLIC" \
    --data-dir "$WORK/node-$1" --listen 127.0.0.1:${S3[$1]} --peer-listen 127.0.0.1:0 --admin-listen 127.0.0.1:${ADMIN[$1]} \
    --seed-rate-limit $((RATE_MB * 1000000)) --torrent-max-size $(( (SIZE_MB + 1) << 20 )) \
    >/dev/null 2>"$WORK/node-$1.log" & PIDS+=($!)
  wait_health "${S3[$1]}"
}
seeder_of() { sed -n 's/.*BitTorrent seeder listening.*advertised=\([0-9.:]*\).*/\1/p' "$WORK/node-$1.log" | tail -n1; }
phase() { # label object-key nodes...: one swarm, its JSON result into $WORK/<label>.json
  local label=$1 key=$2 n args=(); shift 2
  for n in "$@"; do
    [ -n "$(seeder_of "$n")" ] || { echo "node $n logged no seeder address"; exit 1; }
    args+=("$n=${ADMIN[$n]}=$(seeder_of "$n")")
  done
  echo "== $label: $LEECHERS leechers, ${SIZE_MB} MiB, seeders: ${args[*]}"
  "$PY" - "$PUBLIC" "$key" "$WORK" "$SIZE_MB" "$LEECHERS" "$TIMEOUT" "$label" "${args[@]}" <<'EOF'
import hashlib, json, os, sys, time, urllib.request
import boto3, botocore.config, libtorrent as lt
public, key, work, size_mb, n, timeout, label = sys.argv[1:8]
size_mb, n, timeout = int(size_mb), int(n), float(timeout)
nodes = [a.split("=") for a in sys.argv[8:]]   # name, admin port, seeder ip:port
s3 = boto3.client("s3", endpoint_url=public, region_name="us-east-1",
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
try:
    s3.create_bucket(Bucket="scaleout")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
data = os.urandom(size_mb << 20)
s3.put_object(Bucket="scaleout", Key=key, Body=data, ACL="public-read")
meta = lt.bdecode(s3.get_object_torrent(Bucket="scaleout", Key=key)["Body"].read())
meta.pop(b"url-list", None)
announce = meta[b"announce"].decode()

def uploaded(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {"peer": 0.0, "webseed": 0.0}
    for line in text.splitlines():
        for via in out:
            if line.startswith(f'seedbucket_uploaded_bytes_total{{via="{via}"}}'):
                out[via] = float(line.rsplit(" ", 1)[1])
    return out

settings = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
            "enable_natpmp": False, "allow_multiple_connections_per_ip": True}
before = {name: uploaded(admin) for name, admin, _ in nodes}
seeder_port = {addr: name for name, _, addr in nodes}
start = time.time()
sessions, handles = [], []
for i in range(n):
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    atp.save_path = f"{work}/{label}-leech{i}"
    handles.append(ses.add_torrent(atp)); sessions.append(ses)
# Leecher-side accounting: bytes each leecher received from each connection, highest seen
# (a connection's counter lives as long as the connection; a finished leecher drops seeders).
got = {}   # (leecher, ip:port) -> bytes
finished = [None] * n
while not all(finished):
    now = time.time()
    if now - start > timeout:
        sys.exit(f"{label}: leechers did not finish in {timeout:.0f} s "
                 f"({sum(1 for f in finished if f)} of {n} done)")
    for i, h in enumerate(handles):
        for p in h.get_peer_info():
            k = (i, f"{p.ip[0]}:{p.ip[1]}")
            got[k] = max(got.get(k, 0), p.total_download)
        if finished[i] is None and h.status().is_seeding:
            finished[i] = now - start
    time.sleep(0.2)
elapsed = max(finished)
want = hashlib.sha256(data).digest()
for i in range(n):
    with open(f"{work}/{label}-leech{i}/{key}", "rb") as f:
        assert hashlib.sha256(f.read()).digest() == want, f"leecher {i}: wrong bytes"
time.sleep(1)   # let the last blocks' counters settle
after = {name: uploaded(admin) for name, admin, _ in nodes}
per_node = {}
for name, _, addr in nodes:
    per_node[name] = {
        "peer": after[name]["peer"] - before[name]["peer"],
        "webseed": after[name]["webseed"] - before[name]["webseed"],
        "received_from_seeder": sum(v for (i, a), v in got.items() if a == addr),
        "leechers_served": sum(1 for i in range(n) if got.get((i, addr), 0) > 0),
    }
result = {"label": label, "announce": announce, "size": len(data), "leechers": n, "elapsed": elapsed,
          "first_finish": min(finished), "nodes": per_node}
json.dump(result, open(f"{work}/{label}.json", "w"))
print(json.dumps(result))
for h in handles:
    h.pause()
EOF
  rm -rf "$WORK/$label"-leech*
}

node a
phase one a-object.bin a
node b; node c
# Every node's seeder is in node A's announce replies once its heartbeat reached Redis (every 2 s).
LIVE=0
for _ in $(seq 100); do
  LIVE=$(redis-cli -p "$RD_PORT" zcard sb:nodes 2>/dev/null || echo 0)
  [ "$LIVE" = 3 ] && break; sleep 0.1
done
[ "$LIVE" = 3 ] || echo "WARNING: Redis lists $LIVE live nodes after 10 s, not 3"
sleep 2
phase three b-object.bin a b c
RUNTIME=$(( $(date +%s) - BUILT ))

"$PY" - "$WORK" "$RATE_MB" "$RUNTIME" "$(( BUILT - START ))" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF' | tee "$OUT/scaleout.md"
import json, sys, time
work, rate, runtime, build, load = sys.argv[1:6]
one = json.load(open(f"{work}/one.json")); three = json.load(open(f"{work}/three.json"))
size, n = one["size"], one["leechers"]
mb = lambda b: f"{b / 1e6:.1f}"
def total(r, via): return sum(v[via] for v in r["nodes"].values())
print(f"# Scale-out benchmark ({time.strftime('%Y-%m-%d')}, {size >> 20} MiB public object, {n} libtorrent leechers, "
      f"each node's seeder capped at {rate} MB/s, webseed removed)\n")
print("Gateway nodes over one embedded seedbucket backend and one redis-server, all on 127.0.0.1; the torrent's "
      f"tracker is node A's ({one['announce']}).\n")
print("| nodes | node | seeder upload MB | webseed upload MB | leechers served | received by the leechers from its seeder, MB |")
print("|---|---|---|---|---|---|")
for r, label in ((one, "1"), (three, "3")):
    for name, v in sorted(r["nodes"].items()):
        print(f"| {label} | {name.upper()} | {mb(v['peer'])} | {mb(v['webseed'])} | {v['leechers_served']} of {n} | {mb(v['received_from_seeder'])} |")
print()
print("| figure | 1 node | 3 nodes | ratio (3 / 1) |")
print("|---|---|---|---|")
t1, t3 = one["elapsed"], three["elapsed"]
print(f"| time to the last finish, s | {t1:.1f} | {t3:.1f} | {t3 / t1:.2f} (speed-up {t1 / t3:.2f}x) |")
print(f"| time to the first finish, s | {one['first_finish']:.1f} | {three['first_finish']:.1f} | {three['first_finish'] / one['first_finish']:.2f} |")
u1 = total(one, "peer") + total(one, "webseed"); u3 = total(three, "peer") + total(three, "webseed")
print(f"| server upload, all nodes, MB | {mb(u1)} | {mb(u3)} | {u3 / u1:.2f} |")
print(f"| server upload / object size | {u1 / size:.2f} | {u3 / size:.2f} | |")
print(f"| server upload rate over the run, MB/s (the caps together) | {u1 / 1e6 / t1:.1f} ({int(rate)}) | "
      f"{u3 / 1e6 / t3:.1f} ({3 * int(rate)}) | |")
peers3 = [v["peer"] for v in three["nodes"].values()]
print(f"| largest node's share of the seeder upload | 1.00 | {max(peers3) / sum(peers3):.2f} | |")
print(f"| bytes the leechers received, MB | {mb(n * size)} | {mb(n * size)} | |")
print()
for name, v in sorted(three["nodes"].items()):
    if v["peer"] == 0:
        print(f"WARNING: node {name.upper()} uploaded nothing in the three-node swarm (was its seeder in the peer lists?)\n")
print(f"Run time: {runtime} s after the build (which took {build} s); load average at the end: {load}.")
EOF
for l in backend node-a node-b node-c; do
  if grep -qv 'INFO' "$WORK/$l.log" 2>/dev/null; then
    echo "== $l log, lines other than INFO (first 20)"; grep -v 'INFO' "$WORK/$l.log" | head -n 20 | sed 's/\x1b\[[0-9;]*m//g'
  fi
done
