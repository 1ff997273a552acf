"""Scale-out (issue 13): three gateway nodes A, B, C over one 3-node Garage cluster and one
redis-server, behind nginx (docs/examples/nginx-seedbucket.conf, rendered with loopback ports).
Every part is the real program on 127.0.0.1; BitTorrent clients run with DHT, LSD, UPnP and
NAT-PMP off.

- a peer announcing to one node (HTTP or UDP) is handed to peers announcing to another;
- every node's announce reply lists all three nodes' seeders;
- a private torrent's token announced through A lets that address download from B's seeder,
  and nothing is served to it without the announce;
- a burst of first `?torrent`s on all nodes hashes the object once, and the torrents are
  byte-identical;
- a key created and a bucket ACL changed through A apply on C within a second;
- Redis stopped and started again (empty) during a swarm: S3 keeps working, announces fail with
  a clear reason and recover; a download from the seeders goes on, one started meanwhile gets
  the webseed; both complete;
- a node killed during a download from all three seeders (found through the tracker, via nginx;
  no webseed): the download completes (last test; the node is started again afterwards).

Run with `.venv/bin/pytest -q tests/interop/test_scaleout.py` (scripts/test.sh runs it as its
own step). redis-server and nginx come from Debian (scripts/test.sh installs them).
"""
import hashlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import botocore.exceptions
import libtorrent as lt
import pytest

from backends import GarageCluster
from conftest import ACCESS_KEY, ROOT, SECRET_KEY, _binary, _free_port, gateway_args, make_client
from test_get_object_torrent import torrent_of
from test_seeder import SESSION, handshake, wait_seeding, without_webseed
from test_tracker import udp_announce, udp_connect

# Large enough for the kill test's 64 MiB object.
TORRENT_MAX = 100_000_000
# Each node's seeder sends at most this many bytes a second (--seed-rate-limit), so that Redis
# or a node can go away in the middle of a download from the seeders. (libtorrent's own download
# limits starve its peer connections while a webseed waits for quota, then let the webseed take
# everything at once; nginx's limit_rate does nothing with proxy_buffering off.)
SEED_RATE = 2_000_000
NGINX_EXAMPLE = ROOT / "docs" / "examples" / "nginx-seedbucket.conf"
# The lines of the example that the test replaces with its own loopback addresses.
EXAMPLE_NODES = ["10.0.0.11:9000", "10.0.0.12:9000", "10.0.0.13:9000"]
EXAMPLE_LISTEN = "listen 80;"
HASHING_LINE = "hashing object for its torrent"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def tool(name):
    """A Debian tool's path (nginx lives in /usr/sbin); a missing one fails, never skips."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                         if os.access(p, os.X_OK)), None)
    if not found:
        raise RuntimeError(f"{name} is required: apt-get install -y redis-server nginx "
                           "(./scripts/test.sh installs them when run as root)")
    return found


def wait_for(probe, timeout, what, interval=0.1):
    """Calls probe() until it returns something true; raises AssertionError after timeout
    (`what`, or what it returns if it is callable, says what was awaited)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            r = probe()
            if r:
                return r
        except Exception as e:  # noqa: BLE001 - what we wait out
            last = e
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------- the parts


class Redis:
    """redis-server on a free loopback port, no persistence; stop() and start() again on the
    same port come back empty."""

    def __init__(self, tmp: Path):
        self.binary = tool("redis-server")
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/"
        self.log_path = self.dir / "redis.log"
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while self.command("PING") != "+PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def command(self, *args):
        """One command over RESP; its first reply line (`+PONG`, `:3`), or None if unreachable."""
        req = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in map(str, args))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(req)
                return s.makefile("rb").readline().decode().strip()
        except OSError:
            return None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Node:
    """One seedbucket gateway node: its own data dir, S3 port (TCP, and UDP for its tracker)
    and seeder; every node the same backend, root key, Redis and --public-url (nginx)."""

    def __init__(self, name: str, tmp: Path, garage, redis: Redis, public_url: str):
        self.name = name
        self.dir = tmp / f"node-{name}"
        self.dir.mkdir()
        self.data_dir = self.dir / "data"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_args, backend_env = gateway_args(garage)
        self.redis = redis
        self.env = dict(os.environ, SEEDBUCKET_ROOT_ACCESS_KEY=ACCESS_KEY, SEEDBUCKET_ROOT_SECRET_KEY=SECRET_KEY,
                        RUST_LOG="info", NO_COLOR="1", **backend_env)
        self.args = [_binary(), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
                     "--peer-listen", "127.0.0.1:0", "--public-url", public_url, "--redis", redis.url,
                     # nginx: tracker clients' addresses are taken from its X-Forwarded-For
                     # (everything is 127.0.0.1 here, so this only checks the deployment's flags)
                     "--trusted-proxy", "127.0.0.1",
                     "--torrent-max-size", str(TORRENT_MAX), "--seed-rate-limit", str(SEED_RATE),
                     *self.backend_args]
        self.log_path = self.dir / "node.log"
        self.proc = None
        self.seeder = None  # ("127.0.0.1", port) as advertised, from the log

    def start(self):
        """Starts the node (again, on the same S3 port) and waits until it serves."""
        with open(self.log_path, "ab") as log:
            mark = log.tell()
            self.proc = subprocess.Popen(self.args, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            with urllib.request.urlopen(f"{self.url}/_seedbucket/health", timeout=1) as r:
                return r.status == 200
        deadline = time.monotonic() + 30
        while True:
            try:
                if up():
                    break
            except RuntimeError:
                raise
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not start:\n{self.logs()}")
            time.sleep(0.05)
        m = re.search(r"BitTorrent seeder listening .*advertised=(\S+):(\d+)", self.logs(since=mark))
        assert m, f"node {self.name} logged no seeder address:\n{self.logs()}"
        self.seeder = (m.group(1), int(m.group(2)))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def logs(self, since=0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return _ANSI.sub("", f.read().decode(errors="replace"))

    def create_key(self, name: str):
        """`seedbucket key create` with this node's backend settings and Redis (which tells the
        nodes at once)."""
        out = subprocess.run([_binary(), "key", "create", name, "--data-dir", str(self.data_dir),
                              "--redis", self.redis.url, *self.backend_args],
                             env=dict(self.env, RUST_LOG="warn"), check=True, capture_output=True, text=True,
                             timeout=60).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return fields["access key"].strip(), fields["secret key"].strip(), fields["user id"].strip()


def render_nginx_site(nodes, port) -> str:
    """docs/examples/nginx-seedbucket.conf with the test's node addresses and listen port."""
    text = NGINX_EXAMPLE.read_text()
    for placeholder, node in zip(EXAMPLE_NODES, nodes):
        assert text.count(placeholder) == 1, f"{NGINX_EXAMPLE} lost its line for {placeholder}"
        text = text.replace(placeholder, f"127.0.0.1:{node.port}")
    assert text.count(EXAMPLE_LISTEN) == 1, f"{NGINX_EXAMPLE} lost its `{EXAMPLE_LISTEN}` line"
    text = text.replace(EXAMPLE_LISTEN, f"listen 127.0.0.1:{port};")
    active = [line.split("#")[0].strip() for line in text.splitlines()]
    assert [line for line in active if line.startswith("listen")] == [f"listen 127.0.0.1:{port};"], \
        "every listen line the test runs must bind 127.0.0.1"
    return text


class Nginx:
    """nginx with its own prefix, config, pid, logs and temp dirs, running the example config."""

    def __init__(self, tmp: Path, nodes, port: int):
        self.binary = tool("nginx")
        self.dir = tmp / "nginx"
        (self.dir / "tmp").mkdir(parents=True)
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "seedbucket.conf").write_text(render_nginx_site(nodes, self.port))
        # Run as root (as test.sh does), the master would hand its workers to `nobody`, who
        # cannot enter the 0700 tmp dir: keep the workers as the user running the test.
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        d = self.dir
        (d / "nginx.conf").write_text(f"""\
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/seedbucket.conf;
}}
""")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "wb"))

    def wait_serving(self):
        """Until a health check through nginx reaches a node."""
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_seedbucket/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not serve:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(f"---- {p.name} ----\n" + p.read_text(errors="replace")[-3000:]
                         for p in (self.dir / "stderr.log", self.dir / "error.log") if p.exists())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def keep_logs(tmp: Path):
    """Copies every log of the run (nodes, nginx, redis, garage) out of the tmp dir, which is
    about to go; says where in a warning (shown in pytest's summary)."""
    kept = Path(tempfile.mkdtemp(prefix="seedbucket-scaleout-logs-"))
    for f in tmp.rglob("*.log"):
        dest = kept / f.relative_to(tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    warnings.warn(f"test_scaleout failed: the logs of every part are in {kept}")


@pytest.fixture(scope="module")
def cluster(request):
    parts = []
    failed_before = request.session.testsfailed
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        c = types.SimpleNamespace()
        setup_failed = False
        try:
            c.redis = Redis(tmp)
            parts.append(c.redis)
            c.garage = GarageCluster(tmp / "garage")
            parts.append(c.garage)
            # nginx first: its URL is every node's --public-url, and its upstreams are the
            # nodes' S3 ports (chosen now, bound when each node starts).
            nginx_port = _free_port()
            c.url = f"http://127.0.0.1:{nginx_port}"
            c.nodes = [Node(name, tmp, c.garage, c.redis, c.url) for name in "ABC"]
            c.nginx = Nginx(tmp, c.nodes, nginx_port)
            parts.append(c.nginx)
            # One after the other: the first one creates the metadata bucket and server.secret.
            for n in c.nodes:
                parts.append(n)
                n.start()
            c.nginx.wait_serving()
            c.s3 = make_client(c)
            c.bucket = "scaleout-" + os.urandom(4).hex()
            c.s3.create_bucket(Bucket=c.bucket)
            new_object(c, "ready.bin", 1000, public=True)
            wait_all_seeders(c)
            yield c
        except BaseException:
            setup_failed = True
            raise
        finally:
            for p in reversed(parts):
                try:
                    p.stop()
                except Exception as e:  # noqa: BLE001
                    print(f"stopping {p}: {e!r}")
            if setup_failed or request.session.testsfailed > failed_before:
                keep_logs(tmp)


# ---------------------------------------------------------------- helpers


def announce(url, info_hash: bytes, peer_id: bytes, port: int, left: int, event=None):
    """An HTTP announce (compact); the bdecoded reply. (test_tracker's, with a timeout.)"""
    q = {"info_hash": info_hash, "peer_id": peer_id, "port": port, "uploaded": 0, "downloaded": 0, "left": left}
    if event:
        q["event"] = event
    with urllib.request.urlopen(url + ("&" if "?" in url else "?") + urllib.parse.urlencode(q), timeout=10) as r:
        assert r.status == 200
        return lt.bdecode(r.read())


def node_client(node, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    return make_client(node, access_key, secret_key)


def new_object(c, key, size, public=False, bucket=None):
    data = os.urandom(size)
    extra = {"ACL": "public-read"} if public else {}
    c.s3.put_object(Bucket=bucket or c.bucket, Key=key, Body=data, **extra)
    return data


def new_torrent(c, key, size, public=False, fmt="v1"):
    """A new object (through nginx) and its torrent's metainfo and v1 info-hash."""
    c.last_data = new_object(c, key, size, public)
    meta = lt.bdecode(torrent_of(c.s3, c.bucket, key, fmt)["Body"].read())
    return meta, bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))


def on(meta, node):
    """The torrent's announce URL (nginx's, with the token if private) aimed at one node."""
    ann = meta[b"announce"].decode()
    base = ann.split("/announce")[0]
    assert base.startswith("http://127.0.0.1:"), ann
    return node.url + ann[len(base):]


def url_data(meta):
    """The BEP 41 URL data (path and query, with the token) for a UDP announce."""
    ann = meta[b"announce"].decode()
    return ("/announce" + ann.split("/announce", 1)[1]).encode()


def peer_id(tag: str) -> bytes:
    return ("-XT0001-" + tag).encode().ljust(20, b"x")[:20]


def compact(peers: bytes):
    return {(socket.inet_ntoa(peers[i:i + 4]), int.from_bytes(peers[i + 4:i + 6], "big"))
            for i in range(0, len(peers), 6)}


def peers_of(reply: dict):
    assert b"failure reason" not in reply, reply
    return compact(reply[b"peers"])


def udp_peers(reply: bytes):
    action = struct.unpack(">I", reply[:4])[0]
    assert action == 1, f"UDP announce refused: {reply[8:]!r}"
    return compact(reply[20:])


def failure(reply: dict) -> bytes:
    return reply.get(b"failure reason", b"")


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def lt_session(**settings):
    """test_seeder's session (loopback, no DHT, LSD, UPnP, NAT-PMP), over TCP only: libtorrent
    tries uTP first and waits 3 s for it to time out (the seeder speaks TCP)."""
    return lt.session(dict(SESSION, enable_outgoing_utp=False, enable_incoming_utp=False, **settings))


def add(ses, meta, save):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    atp.save_path = str(save)
    return ses.add_torrent(atp)


def bare(meta):
    """No webseed, no tracker: the bytes can only come from peers the test connects to."""
    meta = without_webseed(meta)
    meta.pop(b"announce", None)
    meta.pop(b"announce-list", None)
    return meta


def wait_all_seeders(c, timeout=15):
    """Until an announce to each node lists the three nodes' seeders (every node's heartbeat
    is in Redis)."""
    meta = lt.bdecode(torrent_of(c.s3, c.bucket, "ready.bin", "v1")["Body"].read())
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    want = {n.seeder for n in c.nodes}
    for i, n in enumerate(c.nodes):
        # ("stopped" announces add no peer: every peer listed is a seeder.)
        wait_for(lambda n=n, i=i: peers_of(announce(on(meta, n), ih, peer_id(f"ready{i}"), 6000, 0, "stopped"))
                 == want, timeout, f"node {n.name} to list every seeder {want}")


def describe(h):
    """A libtorrent download's state, for failure messages."""
    st = h.status()
    return (f"{st.state} progress={st.progress:.3f} peers="
            f"{[(tuple(p.ip), int(p.connection_type), p.total_download) for p in h.get_peer_info()]}")


def by_peer(h):
    """Payload bytes received so far from each BitTorrent peer (webseeds left out)."""
    out = {}
    for p in h.get_peer_info():
        if p.connection_type == lt.peer_info.standard_bittorrent:
            out[tuple(p.ip)] = out.get(tuple(p.ip), 0) + p.total_download
    return out


# ---------------------------------------------------------------- tests


def test_peers_meet_across_nodes_over_http_and_udp(cluster):
    c = cluster
    a, b, cc = c.nodes
    meta, ih = new_torrent(c, "meet/http.bin", 50_000)  # private: announces carry the token
    first = announce(on(meta, a), ih, peer_id("A1"), 7001, 100, "started")
    assert ("127.0.0.1", 7001) not in peers_of(first)
    second = announce(on(meta, b), ih, peer_id("B1"), 7002, 100, "started")
    assert ("127.0.0.1", 7001) in peers_of(second), "a peer announced to A is not handed out by B"
    again = announce(on(meta, cc), ih, peer_id("A1"), 7001, 100)
    assert ("127.0.0.1", 7002) in peers_of(again), "a peer announced to B is not handed out by C"

    # UDP (BEP 15, the token as BEP 41 URL data) on each node's own UDP port.
    udp_meta, udp_ih = new_torrent(c, "meet/udp.bin", 50_000)
    ud = url_data(udp_meta)
    first = udp_peers(udp_announce(a.port, udp_connect(a.port), udp_ih, peer_id("UA"), 9001, 10, url=ud))
    assert ("127.0.0.1", 9001) not in first
    second = udp_peers(udp_announce(b.port, udp_connect(b.port), udp_ih, peer_id("UB"), 9002, 10, url=ud))
    assert ("127.0.0.1", 9001) in second, "a peer announced over UDP to A is not handed out by B"
    # A connection id from one node is good on another (so a UDP balancer needs no stickiness).
    third = udp_peers(udp_announce(cc.port, udp_connect(a.port), udp_ih, peer_id("UC"), 9003, 10, url=ud))
    assert {("127.0.0.1", 9001), ("127.0.0.1", 9002)} <= third
    # One swarm whatever the transport: an HTTP announce to C sees both UDP peers.
    mixed = peers_of(announce(on(udp_meta, cc), udp_ih, peer_id("HC"), 7003, 10, "started"))
    assert {("127.0.0.1", 9001), ("127.0.0.1", 9002)} <= mixed


def test_every_reply_lists_all_three_seeders(cluster):
    c = cluster
    want = {n.seeder for n in c.nodes}
    assert len({p for _, p in want}) == 3, want
    meta, ih = new_torrent(c, "seeders/all.bin", 40_000, public=True)
    targets = [(n.name, on(meta, n)) for n in c.nodes] + [("nginx", meta[b"announce"].decode())]
    for i, (name, url) in enumerate(targets):
        reply = announce(url, ih, peer_id(f"S{i}"), 7100 + i, 100, "started")
        test_peers = {("127.0.0.1", 7100 + j) for j in range(i)}
        servers = peers_of(reply) - test_peers
        assert servers == want, f"{name}: the peers not announced by the test are {servers}, seeders are {want}"
    for n in c.nodes:
        r = udp_announce(n.port, udp_connect(n.port), ih, peer_id(f"U{n.name}"), 9100, 100, url=url_data(meta))
        servers = {p for p in udp_peers(r) if not 7000 <= p[1] < 10000}
        assert servers == want, f"UDP on {n.name}: {servers} != {want}"


def test_a_private_token_admitted_through_a_opens_b_seeder(cluster, tmp_path):
    c = cluster
    a, b, _ = c.nodes
    ses = lt_session()
    # Admitted through A: B's seeder alone serves it.
    meta, ih = new_torrent(c, "private/admitted.bin", 1_500_000 + 7)
    data = c.last_data
    assert meta[b"info"][b"private"] == 1
    assert failure(announce(on(meta, a), ih, peer_id("PA"), ses.listen_port(), 1_500_007, "started")) == b""
    h = add(ses, bare(meta), tmp_path / "admitted")
    h.connect_peer(b.seeder)
    try:
        wait_seeding([h], timeout=60)
    finally:
        ses.remove_torrent(h)
    assert sha((tmp_path / "admitted" / "admitted.bin").read_bytes()) == sha(data)

    # Never announced (another torrent, same address): B's seeder serves nothing.
    meta2, ih2 = new_torrent(c, "private/never.bin", 1_000_000)
    assert meta2[b"info"][b"private"] == 1
    assert handshake(b.seeder[1], ih2) == b"", "B's seeder answered a handshake for a torrent nobody announced"
    h = add(ses, bare(meta2), tmp_path / "refused")
    h.connect_peer(b.seeder)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            st = h.status()
            assert st.total_wanted_done == 0 and st.total_payload_download == 0, \
                f"B's seeder sent {st.total_payload_download} bytes of a torrent never announced"
            time.sleep(0.25)
    finally:
        ses.remove_torrent(h)
    # The same torrent once announced through A (with its token): B's seeder takes the handshake.
    assert failure(announce(on(meta2, a), ih2, peer_id("PB"), ses.listen_port(), 1_000_000, "started")) == b""
    reply = wait_for(lambda: handshake(b.seeder[1], ih2), 5, "B's seeder to accept the admitted address", 0.2)
    assert len(reply) == 68 and reply[28:48] == ih2


def test_a_burst_of_first_torrents_hashes_once(cluster):
    c = cluster
    key = "hashing/direct-" + os.urandom(4).hex() + ".bin"
    data = os.urandom(8_000_000 + 3)
    # Straight into the backend: no node has its pieces, the first ?torrent reads it whole.
    c.garage.client(0).put_object(Bucket=c.bucket, Key=key, Body=data)
    # Public, so the torrent has no expiring webseed signature: every node's is the same bytes.
    c.s3.put_object_acl(Bucket=c.bucket, Key=key, ACL="public-read")
    marks = [len(n.logs()) for n in c.nodes]
    clients = [node_client(n) for n in c.nodes]
    barrier = threading.Barrier(len(clients))
    bodies, errors = [None] * len(clients), []

    def ask(i):
        try:
            barrier.wait(10)
            bodies[i] = torrent_of(clients[i], c.bucket, key, "v1")["Body"].read()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert bodies[0] == bodies[1] == bodies[2], "the three nodes gave different torrents"
    # ... also asked again through nginx, and equal to a reference made from the bytes.
    assert torrent_of(c.s3, c.bucket, key, "v1")["Body"].read() == bodies[0]
    meta = lt.bdecode(bodies[0])
    assert meta[b"info"][b"length"] == len(data)
    pieces = meta[b"info"][b"pieces"]
    plen = meta[b"info"][b"piece length"]
    assert pieces == b"".join(hashlib.sha1(data[i:i + plen]).digest() for i in range(0, len(data), plen))
    lines = {n.name: [line for line in n.logs(since=0)[m:].splitlines() if HASHING_LINE in line and f"key={key}" in line]
             for n, m in zip(c.nodes, marks)}
    hashed = {name: ls for name, ls in lines.items() if ls}
    assert sum(len(ls) for ls in lines.values()) == 1, f"hashed {sum(len(ls) for ls in lines.values())} times: {hashed}"


def test_a_key_and_an_acl_changed_through_a_apply_on_c_within_a_second(cluster):
    c = cluster
    a, _, cn = c.nodes
    root_a = node_client(a)
    bucket = "acl-" + os.urandom(4).hex()
    root_a.create_bucket(Bucket=bucket, ACL="public-read")
    root_a.put_object(Bucket=bucket, Key="k", Body=b"hello")

    # A key: created with the CLI on A's settings, usable on C within a second.
    ak, sk, user = a.create_key("scaleout-" + os.urandom(3).hex())
    done = time.monotonic()
    on_c = node_client(cn, ak, sk)
    wait_for(lambda: on_c.list_buckets() is not None, 1.5, "the new key to work on C", 0.05)
    assert time.monotonic() - done <= 1.5

    # Public-read → private through A: C stops serving anonymous listings within a second.
    listing = f"{cn.url}/{bucket}"
    assert wait_for(lambda: status_of(listing) == 200, 10, "C to serve the public bucket's listing")
    root_a.put_bucket_acl(Bucket=bucket, ACL="private")
    done = time.monotonic()
    wait_for(lambda: status_of(listing) == 403, 1.5, "C to apply the private ACL", 0.05)
    assert time.monotonic() - done <= 1.5

    # A grant to the new key through A: C lets it list within a second (C has the old ACL cached).
    with pytest.raises(botocore.exceptions.ClientError) as e:
        on_c.list_objects_v2(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    owner = root_a.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    root_a.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{user}"', GrantFullControl=f'id="{owner}"')
    done = time.monotonic()
    got = wait_for(lambda: on_c.list_objects_v2(Bucket=bucket), 1.5, "C to apply the grant", 0.05)
    assert time.monotonic() - done <= 1.5
    assert [o["Key"] for o in got["Contents"]] == ["k"]


def test_browsers_meet_across_nodes_on_the_websocket_tracker(cluster):
    """Browser peers (the WebSocket tracker's protocol, with a real WebSocket client) connected
    to different nodes: counts are the shared swarm's, an offer made through A reaches the
    browser on B, B's answer comes back through A, a peer id live on one node cannot be taken
    through another, and a browser that leaves is gone for the others."""
    from test_websocket_tracker import announce as ws_announce, bstr, recv
    from websockets.sync.client import connect

    meta, ih = new_torrent(cluster, "browsers.bin", 200_000, public=True)
    a_node, b_node, c_node = cluster.nodes
    ws = lambda n: n.url.replace("http://", "ws://") + "/announce"  # noqa: E731
    a_id, b_id = b"-WW0100-across-aaaaa", b"-WW0100-across-bbbbb"
    with connect(ws(a_node)) as a, connect(ws(b_node)) as b:
        ws_announce(b, ih, b_id, left=0)
        assert recv(b)["complete"] == 1
        offer_id = os.urandom(20)
        ws_announce(a, ih, a_id, offers=[{"offer_id": bstr(offer_id), "offer": {"type": "offer", "sdp": "v=0 from-a"}}])
        reply = recv(a)
        assert (reply["complete"], reply["incomplete"]) == (1, 1), reply
        got = recv(b)  # relayed from A's node to B's through Redis
        assert got["offer"] == {"type": "offer", "sdp": "v=0 from-a"}
        assert got["peer_id"] == bstr(a_id) and got["offer_id"] == bstr(offer_id)
        b.send(json.dumps({"action": "announce", "info_hash": bstr(ih), "peer_id": bstr(b_id),
                           "to_peer_id": bstr(a_id), "offer_id": bstr(offer_id),
                           "answer": {"type": "answer", "sdp": "v=0 from-b"}}))
        ans = recv(a)
        assert ans["answer"] == {"type": "answer", "sdp": "v=0 from-b"} and ans["peer_id"] == bstr(b_id)
        # A's peer id is live on A's node: C refuses it to another socket.
        with connect(ws(c_node)) as thief:
            ws_announce(thief, ih, a_id)
            assert "in use" in recv(thief).get("failure reason", ""), "peer id taken over across nodes"
    # Both sockets closed: their nodes took their entries out of the shared swarm.
    with connect(ws(c_node)) as late:
        def alone():
            ws_announce(late, ih, b"-WW0100-across-ccccc")
            r = recv(late)
            return (r["complete"], r["incomplete"]) == (0, 1)
        wait_for(alone, 10, "the closed sockets' entries to leave the shared swarm", interval=0.5)


def test_browser_tabs_on_two_nodes_share_an_object_over_webrtc(cluster, tmp_path):
    """WebTorrent in two Chromium tabs whose only trackers are two different nodes (each tab is
    given the torrent with its own node's WebSocket tracker alone: same info-hash, since the
    trackers are outside the info dictionary): the second tab still gets bytes from the first,
    which only the relay between the nodes can have introduced."""
    from browser import Browser
    from test_webtorrent import page_url, publish_page, wait_done

    c = cluster
    publish_page(c.s3, c.bucket)
    size = 24 << 20
    data = new_object(c, "webrtc-across.bin", size, public=True)
    meta = lt.bdecode(torrent_of(c.s3, c.bucket, "webrtc-across.bin", "v1")["Body"].read())
    for node, name in zip(c.nodes[:2], ("via-a", "via-b")):
        own = dict(meta)
        own[b"announce"] = (node.url.replace("http://", "ws://") + "/announce").encode()
        own[b"announce-list"] = [[own[b"announce"]]]
        c.s3.put_object(Bucket=c.bucket, Key=f"{name}.torrent", Body=lt.bencode(own),
                        ACL="public-read", ContentType="application/x-bittorrent")
    page = f"{c.url}/{c.bucket}/web/index.html"
    with Browser(tmp_path / "browser") as browser:
        first = browser.open(page_url(page, f"/{c.bucket}/via-a.torrent", data), name="on-a")
        first.wait_for("window.seedbucketDownload && window.seedbucketDownload.bytesFromWebseed > 0",
                       timeout=60, what="the first tab's first webseed bytes")
        second = browser.open(page_url(page, f"/{c.bucket}/via-b.torrent", data) + "&webconns=1",
                              name="on-b")
        statuses = [wait_done(t, timeout=240) for t in (first, second)]
    for s in statuses:
        assert s["sha256Ok"] is True, s
    assert statuses[1]["bytesFromPeers"] > 0, (
        f"the tab on node B got nothing from the tab on node A: {statuses}")


def test_redis_stopped_and_restarted_empty_during_a_swarm(cluster, tmp_path):
    """Two downloads of one object: one from the three seeders (found through the tracker, via
    nginx; no webseed), under way when Redis stops; one of the whole torrent (tracker and
    webseed) started while Redis is down, whose announces fail, so its bytes come from the
    webseed. Both complete; Redis comes back empty on the same port and the tracker refills."""
    c = cluster
    a, b, _ = c.nodes
    data = new_object(c, "redis/swarm.bin", 32 * 1024 * 1024, public=True)
    meta = lt.bdecode(torrent_of(c.s3, c.bucket, "redis/swarm.bin", "v1")["Body"].read())
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    assert meta[b"url-list"] and meta[b"announce"].decode().startswith(c.url)
    ses = lt_session()
    peers_only = add(ses, without_webseed(meta), tmp_path / "seeders")
    whole_ses = whole = None
    try:
        # (about 6 MB/s from the three seeders: Redis goes away in the middle)
        wait_for(lambda: sum(by_peer(peers_only).values()) > 0, 30,
                 lambda: f"the download to start from the seeders: {describe(peers_only)}")
        assert peers_only.status().progress < 0.6, describe(peers_only)
        c.redis.stop()
        try:
            from_seeders = sum(by_peer(peers_only).values())
            # S3 goes on.
            c.s3.put_object(Bucket=c.bucket, Key="redis/during.bin", Body=b"no redis")
            assert c.s3.get_object(Bucket=c.bucket, Key="redis/during.bin")["Body"].read() == b"no redis"
            # Announces fail with a clear reason, on every node and through nginx.
            for name, url in [(n.name, on(meta, n)) for n in c.nodes] + [("nginx", meta[b"announce"].decode())]:
                reply = wait_for(lambda url=url: (r := announce(url, ih, peer_id("R0"), 7200, 5))
                                 and b"failure reason" in r and r, 5, f"{name} to refuse announces")
                assert b"tracker state unavailable" in failure(reply), (name, reply)
            # Peers already connected to the seeders keep downloading from them.
            wait_for(lambda: sum(by_peer(peers_only).values()) > from_seeders, 10,
                     lambda: f"more bytes from the seeders while Redis is down: {describe(peers_only)}")
            assert not peers_only.status().is_seeding, "the download finished before Redis was back"
            # A new download (another client): its tracker fails, the webseed serves it.
            whole_ses = lt_session(alert_mask=lt.alert.category_t.error_notification
                                   | lt.alert.category_t.tracker_notification)
            whole = add(whole_ses, meta, tmp_path / "whole")
            wait_seeding([whole], timeout=60)
            errors = []

            def told():
                errors.extend(a.message() for a in whole_ses.pop_alerts() if a.what() == "tracker_error")
                return any("tracker state unavailable" in e for e in errors)
            wait_for(told, 5, lambda: f"libtorrent to report the tracker's failure reason (tracker errors: {errors})")
        finally:
            c.redis.start()  # same port, empty
        # Announces work again, without restarting any node.
        wait_for(lambda: failure(announce(on(meta, a), ih, peer_id("R1"), 7201, 5, "started")) == b"", 15,
                 "A to take announces again", 0.25)
        # The swarm refills from new announces: B hands out the peer that announced to A, and
        # (after the nodes' next heartbeat) all three seeders.
        want = {n.seeder for n in c.nodes}
        reply = wait_for(lambda: (r := announce(on(meta, b), ih, peer_id("R2"), 7202, 5, "started"))
                         and want <= peers_of(r) and r, 10, "B to list the three seeders again", 0.25)
        assert ("127.0.0.1", 7201) in peers_of(reply)
        wait_seeding([peers_only], timeout=120)
    finally:
        ses.remove_torrent(peers_only)
        if whole is not None:
            whole_ses.remove_torrent(whole)
    assert sha((tmp_path / "seeders" / "swarm.bin").read_bytes()) == sha(data)
    assert sha((tmp_path / "whole" / "swarm.bin").read_bytes()) == sha(data)


def test_a_node_killed_during_a_download_from_three_seeders(cluster, tmp_path):
    """Last: it kills node A (and starts it again afterwards, on the same S3 port)."""
    c = cluster
    wait_all_seeders(c)
    data = new_object(c, "kill/big.bin", 64 * 1024 * 1024, public=True)
    # The tracker (through nginx) finds the three seeders; no webseed: only seeders serve.
    meta = without_webseed(lt.bdecode(torrent_of(c.s3, c.bucket, "kill/big.bin", "v1")["Body"].read()))
    seeders = {n.seeder: n for n in c.nodes}
    ses = lt_session()  # (about 6 MB/s from the three seeders, 4 MB/s after the kill: ~15 s)
    h = add(ses, meta, tmp_path / "kill")
    victim = None
    try:
        wait_for(lambda: h.status().progress >= 0.15 and set(seeders) <= set(by_peer(h)), 30,
                 lambda: f"the download to use all three seeders {set(seeders)}: {describe(h)}")
        assert h.status().progress < 0.7, "the download went too fast to kill a node in its middle"
        sent = by_peer(h)
        # The node that has sent the most so far.
        victim = seeders[max(seeders, key=lambda s: sent.get(s, 0))]
        victim.kill()
        at_kill = h.status().progress
        wait_seeding([h], timeout=120)
        assert at_kill < 1
    finally:
        ses.remove_torrent(h)
        if victim is not None:
            victim.start()
    assert sha((tmp_path / "kill" / "big.bin").read_bytes()) == sha(data)
    # The restarted node serves again.
    again = node_client(victim).get_object(Bucket=c.bucket, Key="kill/big.bin", Range="bytes=0-9")
    assert again["Body"].read() == data[:10]

