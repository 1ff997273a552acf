#!/usr/bin/env bash
# Tracker benchmark: HTTP and UDP announces per second and latency, one run on 127.0.0.1, same
# client for every server (s3bench tracker-load over HTTP, keep-alive where the server allows it;
# s3bench udp-load over UDP), same info-hashes where the server takes a list. Servers:
#  - seedbucket embedded (its own data dir), against
#  - opentracker (Debian's whitelist build; it closes every HTTP connection), and
#  - aquatic_http / aquatic_udp 0.9 (crates.io, built into bench/.tools on first use; access list
#    in "allow" mode with the same info-hashes, as many workers as cores, 50 peers per reply);
#  - two seedbucket gateway nodes in front of one backend seedbucket (embedded, its own port and
#    data dir): one keeps the tracker state in process, the other in Redis (--redis, our own
#    redis-server on a free port, no persistence). Each issues its own torrents (s3bench issue
#    through that node) and is loaded with their announce URLs (tokens included). Targets: the
#    Redis node at least 0.5x the in-process node, p99 under 10 ms. INFO from the Redis during its
#    runs is printed under the table (time per announce script, how busy redis-server was).
# Who announces (WORKLOAD, s3bench --workload): `swarm` (default) is a fixed population, as in
# aquatic's own load tester: every client sends from its own loopback address (127.0.0.2 and up)
# for 32 peers of its own (own peer id, port and torrent, three in four seeds) that re-announce in
# turn. `churn` is the worst case: every announce is a peer never seen before, all from 127.0.0.1
# on a new port, so each one joins a swarm and, past the per-address cap, evicts another.
# Prints two tables (figures, ratios) and writes bench/out/tracker.md.
# Each run starts after SETTLE seconds of quiet (default 2), so that what the previous run left
# (a Redis node's queued writes, sockets closing) does not land on the next server's figures.
# Usage: bench/tracker.sh   (env: WORKLOAD=swarm|churn SECONDS_PER_RUN=10 CONCURRENCY=64 TORRENTS=8 KEEP_WORK=1
#                            AQUATIC=0 skips aquatic, SETTLE=2)
set -euo pipefail
. "$(dirname "$0")/server_env.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${SECONDS_PER_RUN:-10}
CONC=${CONCURRENCY:-64}
WORKLOAD=${WORKLOAD:-swarm}
TORRENTS=${TORRENTS:-8}
KEEP_WORK=${KEEP_WORK:-0}
AQUATIC=${AQUATIC:-1}
SETTLE=${SETTLE:-2}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
TOOLS=$ROOT/bench/.tools
WORK=$(mktemp -d /tmp/seedbucket-trbench.XXXXXX); chmod 755 "$WORK"
START=$(date +%s)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    for l in backend gw-inproc gw-redis redis aquatic_http aquatic_udp; do
      [ -s "$WORK/$l.log" ] && { echo "== last lines of $WORK/$l.log"; tail -n 20 "$WORK/$l.log" | sed 's/\x1b\[[0-9;]*m//g'; }
    done
  fi
  if [ "$KEEP_WORK" = 1 ] || [ "$rc" != 0 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release -q -p seedbucket --bin seedbucket && cargo build --release -q -p seedbucket-it --example s3bench
SB=$ROOT/target/release/seedbucket
BENCH=$ROOT/target/release/examples/s3bench
apt_tool() { # package binary
  command -v "$2" >/dev/null && return 0
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 || true
  command -v "$2" >/dev/null
}
apt_tool opentracker opentracker || { echo "opentracker is required (apt-get install opentracker)"; exit 1; }
apt_tool redis-server redis-server && apt_tool redis-tools redis-cli || { echo "redis-server and redis-cli are required (apt-get install redis-server)"; exit 1; }

# aquatic from crates.io, once, into bench/.tools. Not --locked: its lock file pins metrics 0.22.3,
# which Rust 1.95 rejects (E0521, "borrowed data escapes"); unlocked it resolves a newer metrics.
AQ_VERSION=0.9.0
declare -A NOTE   # aquatic_http / aquatic_udp / name.proto -> why it has no figure
aq_install() { # crate
  local s rc=0
  [ -x "$TOOLS/bin/$1" ] && { echo "$1: installed ($("$TOOLS/bin/$1" -v 2>&1 | head -1))"; return 0; }
  echo "== cargo install $1 into bench/.tools (takes minutes on 2 cores)"
  s=$(date +%s)
  cargo install -q "$1" --version "$AQ_VERSION" --root "$TOOLS" >"$WORK/install-$1.log" 2>&1 || rc=$?
  echo "$1: cargo install took $(( $(date +%s) - s )) s (exit $rc)"
  [ "$rc" = 0 ] || { NOTE[$1]="cargo install failed: $(grep -m1 '^error' "$WORK/install-$1.log" || tail -n1 "$WORK/install-$1.log")"; return 1; }
}
if [ "$AQUATIC" = 1 ]; then
  aq_install aquatic_udp || true
  aq_install aquatic_http || true
else
  NOTE[aquatic_udp]="skipped (AQUATIC=0)"; NOTE[aquatic_http]="skipped (AQUATIC=0)"
fi
BUILT=$(date +%s)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
port_open() { for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_health() { for _ in $(seq 300); do curl -fs "http://127.0.0.1:$1/_seedbucket/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no health on port $1"; exit 1; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && python3 -c "print(f'{$1/$2:.2f}')" || echo "n/a"; }
ge() { python3 -c "print('yes' if $1 >= $2 else 'no')" 2>/dev/null || echo "n/a"; }   # a b: a >= b?

export AWS_ACCESS_KEY_ID=BENCHACCESSKEY000001 AWS_SECRET_ACCESS_KEY=bench-secret-key-0000000000000000000000
BK_AK=BENCHBACKENDKEY00001 BK_SK=bench-backend-secret-000000000000000000000
SB_PORT=$(port); OT_PORT=$(port); OT_UDP=$(port); BK_PORT=$(port); GI_PORT=$(port); GR_PORT=$(port); RD_PORT=$(port)
AQH_PORT=$(port); AQU_PORT=$(port)
mkdir -p "$WORK/sb" "$WORK/ot" "$WORK/redis"

# -- servers -----------------------------------------------------------------------------------
SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/sb" --listen 127.0.0.1:$SB_PORT --peer-listen 127.0.0.1:0 --tracker-rate-limit 0 >/dev/null 2>"$WORK/embedded.log" & PIDS+=($!)
# The gateways' backend: an embedded seedbucket with its own root key (the gateways' service credential).
SEEDBUCKET_ROOT_ACCESS_KEY=$BK_AK SEEDBUCKET_ROOT_SECRET_KEY=$BK_SK RUST_LOG=warn \
  "$SB" serve --data-dir "$WORK/backend" --listen 127.0.0.1:$BK_PORT --peer-listen off >/dev/null 2>"$WORK/backend.log" & PIDS+=($!)
redis-server --port "$RD_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 & PIDS+=($!)
wait_port $SB_PORT; wait_port $BK_PORT; wait_port $RD_PORT
gateway() { # name port [extra args]: a gateway node over the backend
  local name=$1 p=$2; shift 2
  SEEDBUCKET_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID SEEDBUCKET_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
  SEEDBUCKET_BACKEND_ACCESS_KEY=$BK_AK SEEDBUCKET_BACKEND_SECRET_KEY=$BK_SK RUST_LOG=warn \
    "$SB" serve --backend s3 --backend-endpoint http://127.0.0.1:$BK_PORT --backend-path-style --backend-region us-east-1 \
    --data-dir "$WORK/$name" --listen 127.0.0.1:$p --peer-listen 127.0.0.1:0 --tracker-rate-limit 0 "$@" \
    >/dev/null 2>"$WORK/$name.log" & PIDS+=($!)
  wait_health "$p"
}
# The first node alone first: it creates the metadata bucket and the shared secret.
gateway gw-inproc "$GI_PORT"
gateway gw-redis "$GR_PORT" --redis "redis://127.0.0.1:$RD_PORT/"
GR_PID=${PIDS[-1]}

# -- torrents: TORRENTS issued through each seedbucket (embedded, and each gateway node) ----------
# Fills the named arrays with --target arguments for tracker-load (announce URL with its token)
# and udp-load (the token as BEP 41 URL data), and HASHES with the embedded server's info-hashes.
HASHES=(); SB_H=(); SB_U=(); GI_H=(); GI_U=(); GR_H=(); GR_U=()
issue() { # port key-prefix http-array udp-array
  local p=$1 prefix=$2 i line h ann
  local -n http_t=$3 udp_t=$4
  "$BENCH" setup --endpoint http://127.0.0.1:$p >/dev/null
  for i in $(seq "$TORRENTS"); do
    line=$("$BENCH" issue --endpoint http://127.0.0.1:$p --key "$prefix$i.bin")
    h=$(echo "$line" | field info_hash); ann=$(echo "$line" | field announce)
    http_t+=(--target "$ann@$h")
    udp_t+=(--target "127.0.0.1:$p@$h@/announce?${ann#*\?}")
    [ "$prefix" = t ] && HASHES+=("$h")
  done
  return 0
}
issue $SB_PORT t SB_H SB_U
issue $GI_PORT gi GI_H GI_U
issue $GR_PORT gr GR_H GR_U
OT_H=(); OT_U=(); AQH_H=(); AQU_U=()
for h in "${HASHES[@]}"; do
  OT_H+=(--target "http://127.0.0.1:$OT_PORT/announce@$h"); OT_U+=(--target "127.0.0.1:$OT_UDP@$h")
  AQH_H+=(--target "http://127.0.0.1:$AQH_PORT/announce@$h"); AQU_U+=(--target "127.0.0.1:$AQU_PORT@$h")
done

# -- opentracker ---------------------------------------------------------------------------------
printf '%s\n' "${HASHES[@]}" > "$WORK/ot/whitelist.txt"
cat > "$WORK/ot.conf" <<CONF
listen.tcp 127.0.0.1:$OT_PORT
listen.udp 127.0.0.1:$OT_UDP
tracker.rootdir $WORK/ot
access.whitelist /whitelist.txt
tracker.user nobody
CONF
opentracker -f "$WORK/ot.conf" >/dev/null 2>&1 & PIDS+=($!)
wait_port $OT_PORT

# -- aquatic: default config printed by the binary (-p), then edited: address, the access list in
# allow mode with the same hashes, 50 peers per reply (the client's numwant), and as many workers as
# cores (seedbucket runs one UDP loop per core and a multi-threaded runtime for HTTP).
printf '%s\n' "${HASHES[@]}" > "$WORK/access-list.txt"
aq_start() { # binary port
  local bin=$TOOLS/bin/$1 conf=$WORK/$1.toml
  "$bin" -p > "$conf"
  python3 - "$conf" "127.0.0.1:$2" "$WORK/access-list.txt" <<'EOF' || { NOTE[$1]="its printed config has changed (see above)"; return 1; }
import os, re, sys
path, addr, acl = sys.argv[1:4]
s = open(path).read()
def sub(key, value, count=1):
    global s
    s, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", s, count=count)
    if n == 0:
        sys.exit(f"{path}: no '{key} =' line in the printed config")
cores = os.cpu_count() or 1
sub("address", f'"{addr}"')
sub("mode", '"allow"')
sub("path", f'"{acl}"')
if "aquatic_udp" in path:
    sub("socket_workers", "0")            # 0 = one per core
    sub("max_response_peers", "50")
else:                                     # aquatic_http: socket workers + swarm workers = cores
    sub("socket_workers", str(max(1, cores // 2)))
    sub("swarm_workers", str(max(1, cores - cores // 2)))
    sub("max_peers", "50")
    sub("enable_tls", "false")            # plain HTTP (the default in 0.9; set in case it changes)
open(path, "w").write(s)
EOF
  "$bin" -c "$conf" >"$WORK/$1.log" 2>&1 & PIDS+=($!)
  sleep 1
  if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
    NOTE[$1]="exits at start: $(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$1.log" | grep -v '^\s*$' | tail -n 3 | tr '\n' ' ')"
    return 1
  fi
}
for a in aquatic_udp aquatic_http; do
  [ -z "${NOTE[$a]:-}" ] || continue
  p=$AQU_PORT; [ $a = aquatic_http ] && p=$AQH_PORT
  aq_start $a $p || echo "$a: ${NOTE[$a]}"
done
if [ -z "${NOTE[aquatic_http]:-}" ] && ! port_open $AQH_PORT; then NOTE[aquatic_http]="its port $AQH_PORT never opened (log: $(tail -n 2 "$WORK/aquatic_http.log" | tr '\n' ' '))"; fi
sleep 1

# -- load ----------------------------------------------------------------------------------------
declare -A L   # name.proto -> s3bench result line
load() { # name proto targets...: one run; a failed run leaves a note instead of a line
  local name=$1 proto=$2 cmd=tracker-load err; shift 2
  [ "$proto" = udp ] && cmd=udp-load
  sleep "$SETTLE"
  echo "== $name $proto"
  if L[$name.$proto]=$("$BENCH" $cmd "$@" --concurrency "$CONC" --seconds "$DUR" --workload "$WORKLOAD" 2>"$WORK/err-$name-$proto.txt"); then
    echo "${L[$name.$proto]}"
  else
    err=$(grep -v '^\s*$' "$WORK/err-$name-$proto.txt" | grep -v '^ *[0-9]*:\|^ *at \|Stack backtrace' | head -n 3 | tr '\n' ' ')
    L[$name.$proto]=""; echo "failed: $err"
    NOTE[$name.$proto]="s3bench $cmd failed: $err"
  fi
}
load sb http "${SB_H[@]}"
load ot http "${OT_H[@]}"
[ -z "${NOTE[aquatic_http]:-}" ] && load aq http "${AQH_H[@]}"
load gi http "${GI_H[@]}"
load_redis() { # proto targets...: the Redis node's run, with Redis's time per announce and busy share
  local proto=$1 c0 c1 n0 n1; shift
  redis-cli -p "$RD_PORT" config resetstat >/dev/null
  c0=$(redis_cpu); n0=$(proc_cpu "$GR_PID")
  load gr "$proto" "$@"
  c1=$(redis_cpu); n1=$(proc_cpu "$GR_PID")
  N_BUSY[$proto]=$(python3 -c "print(f'{100 * ($n1 - $n0) / $DUR:.0f}')")
  redis-cli -p "$RD_PORT" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$OUT/tracker-redis-commandstats-$proto.txt"
  R_US[$proto]=$(sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p' "$OUT/tracker-redis-commandstats-$proto.txt")
  # Announces per script call: a call carries every announce of one swarm queued together.
  local calls; calls=$(sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' "$OUT/tracker-redis-commandstats-$proto.txt")
  R_PER[$proto]=$(python3 -c "print(f'{$(echo "${L[gr.$proto]:-}" | field ok) / $calls:.1f}')" 2>/dev/null || echo n/a)
  R_BUSY[$proto]=$(python3 -c "print(f'{100 * ($c1 - $c0) / $DUR:.0f}')")
}
proc_cpu() { # pid: seconds of CPU it used so far (user + system)
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
redis_cpu() { redis-cli -p "$RD_PORT" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {t += $2} END {print t}'; }
declare -A R_US R_BUSY N_BUSY R_PER
load_redis http "${GR_H[@]}"
load sb udp "${SB_U[@]}"
load ot udp "${OT_U[@]}"
[ -z "${NOTE[aquatic_udp]:-}" ] && load aq udp "${AQU_U[@]}"
load gi udp "${GI_U[@]}"
load_redis udp "${GR_U[@]}"
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# -- table ---------------------------------------------------------------------------------------
v() { echo "${L[$1.$2]:-}" | field "$3"; }           # name proto field
cell() { local x; x=$(v "$@"); echo "${x:-n/a}"; }
row() { # label name
  echo "| $1 | $(cell $2 http per_s) | $(cell $2 http p50_ms) | $(cell $2 http p99_ms) | $(cell $2 udp per_s) | $(cell $2 udp p50_ms) | $(cell $2 udp p99_ms) |"
}
AQ_LABEL="aquatic_http / aquatic_udp $AQ_VERSION (access list)"
{
  echo "# Tracker benchmark ($(date -u +%F), $CONC clients, ${DUR}s per run, workload $WORKLOAD, $TORRENTS info-hashes per server)"
  echo
  echo "| server | HTTP announces/s | HTTP p50 ms | HTTP p99 ms | UDP announces/s | UDP p50 ms | UDP p99 ms |"
  echo "|---|---|---|---|---|---|---|"
  row "seedbucket embedded" sb
  row "opentracker (whitelist)" ot
  row "$AQ_LABEL" aq
  row "seedbucket gateway node, tracker state in process" gi
  row "seedbucket gateway node, tracker state in Redis" gr
  echo
  echo "| ratio | HTTP | UDP | target | met (HTTP, UDP) |"
  echo "|---|---|---|---|---|"
  echo "| seedbucket embedded / opentracker | $(ratio "$(v sb http per_s)" "$(v ot http per_s)") | $(ratio "$(v sb udp per_s)" "$(v ot udp per_s)") | | |"
  echo "| seedbucket embedded / aquatic | $(ratio "$(v sb http per_s)" "$(v aq http per_s)") | $(ratio "$(v sb udp per_s)" "$(v aq udp per_s)") | >= 1.0 | $(ge "$(ratio "$(v sb http per_s)" "$(v aq http per_s)")" 1.0), $(ge "$(ratio "$(v sb udp per_s)" "$(v aq udp per_s)")" 1.0) |"
  echo "| gateway Redis / gateway in process | $(ratio "$(v gr http per_s)" "$(v gi http per_s)") | $(ratio "$(v gr udp per_s)" "$(v gi udp per_s)") | >= 0.5 | $(ge "$(ratio "$(v gr http per_s)" "$(v gi http per_s)")" 0.5), $(ge "$(ratio "$(v gr udp per_s)" "$(v gi udp per_s)")" 0.5) |"
  echo "| gateway Redis p99 ms | $(cell gr http p99_ms) | $(cell gr udp p99_ms) | < 10 | $(ge 10 "$(v gr http p99_ms)"), $(ge 10 "$(v gr udp p99_ms)") |"
  echo "| gateway in process / embedded | $(ratio "$(v gi http per_s)" "$(v sb http per_s)") | $(ratio "$(v gi udp per_s)" "$(v sb udp per_s)") | | |"
  echo
  echo "Redis during the Redis node's runs (INFO commandstats and cpu): one announce script call (EVALSHA) took ${R_US[http]:-n/a} µs"
  echo "and carried ${R_PER[http]:-n/a} announces over HTTP, ${R_US[udp]:-n/a} µs and ${R_PER[udp]:-n/a} over UDP; redis-server was busy ${R_BUSY[http]:-n/a}% and ${R_BUSY[udp]:-n/a}% of one core,"
  echo "the Redis node ${N_BUSY[http]:-n/a}% and ${N_BUSY[udp]:-n/a}% (of one core; two cores are shared with the client)."
  for k in "${!NOTE[@]}"; do echo; echo "No $k figure: ${NOTE[$k]}"; done
  echo "Load average at the end: $LOADAVG. Run time: $(( $(date +%s) - BUILT )) s after the build and installs (which took $(( BUILT - START )) s)."
} | tee "$OUT/tracker.md"
for l in embedded backend gw-inproc gw-redis; do
  if [ -s "$WORK/$l.log" ]; then echo "== $l log ($(wc -l < "$WORK/$l.log") lines, first 20)"; head -n 20 "$WORK/$l.log" | sed 's/\x1b\[[0-9;]*m//g'; fi
done
