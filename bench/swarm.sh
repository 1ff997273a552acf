#!/usr/bin/env bash
# Swarm benchmark: one public object (SIZE_MB, default 256), LEECHERS libtorrent clients (default
# 8) started together on 127.0.0.1, seedbucket's seeder capped at RATE_MB MB/s (default 20), the
# webseed removed. Prints how many bytes the server uploaded against what the leechers received
# (plain HTTP would upload LEECHERS x the object; the goal is under 2.5x) and the time to the last
# finish; writes bench/out/swarm.md. SLOTS sets --seed-slots (default: the server default, 4 per torrent). Needs .venv (./scripts/test.sh makes it).
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-256} LEECHERS=${LEECHERS:-8} RATE_MB=${RATE_MB:-20} SLOTS=${SLOTS:-}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv with boto3 and libtorrent)"; exit 1; }
cargo build --release -q -p seedbucket --bin seedbucket
WORK=$(mktemp -d /tmp/seedbucket-swarm.XXXXXX)
trap 'kill $SB_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SB_PORT=$(port); ADMIN=$(port)
export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  target/release/seedbucket serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:$ADMIN --seed-rate-limit $((RATE_MB * 1000000)) ${SLOTS:+--seed-slots $SLOTS} >/dev/null 2>&1 & SB_PID=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$SB_PORT) 2>/dev/null && break; sleep 0.1; done

.venv/bin/python - "$SB_PORT" "$ADMIN" "$WORK" "$SIZE_MB" "$LEECHERS" "$RATE_MB" <<'EOF' | tee "$OUT/swarm.md"
import hashlib, os, sys, time, urllib.request
import boto3, botocore.config, libtorrent as lt
port, admin, work, size_mb, n, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="swarm")
data = os.urandom(size_mb << 20)
s3.put_object(Bucket="swarm", Key="object.bin", Body=data, ACL="public-read")
meta = lt.bdecode(s3.get_object_torrent(Bucket="swarm", Key="object.bin")["Body"].read())
meta.pop(b"url-list")
def uploaded():
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("seedbucket_uploaded_bytes_total"))
settings = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
            "enable_natpmp": False, "allow_multiple_connections_per_ip": True}
before = uploaded()
start = time.time()
sessions, handles = [], []
for i in range(n):
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    atp.save_path = f"{work}/leech{i}"
    handles.append(ses.add_torrent(atp)); sessions.append(ses)
while not all(h.status().is_seeding for h in handles):
    if time.time() - start > 1800:
        sys.exit("leechers did not finish in 30 minutes")
    time.sleep(0.2)
elapsed = time.time() - start
want = hashlib.sha256(data).digest()
for i in range(n):
    assert hashlib.sha256(open(f"{work}/leech{i}/object.bin", "rb").read()).digest() == want, i
up = uploaded() - before
print(f"# Swarm benchmark ({time.strftime('%Y-%m-%d')}, {size_mb} MiB, {n} libtorrent leechers, seeder capped at {rate} MB/s)\n")
print("| figure | value |\n|---|---|")
print(f"| bytes the leechers received | {n * len(data)} |")
print(f"| bytes the server uploaded | {int(up)} |")
print(f"| server upload / object size | {up / len(data):.2f} (plain HTTP: {n}.00) |")
print(f"| time to the last finish, s | {elapsed:.1f} |")
EOF
