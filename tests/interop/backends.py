"""Real S3 backends on 127.0.0.1 for tests and benchmarks: a Garage cluster and a moto server.

Plain classes, no pytest in here, so bench scripts can import this module too:

    from backends import GarageCluster, MotoServer
    g = GarageCluster(Path(tmp))          # 3 nodes, replication 3, ready to serve S3
    s3 = g.client(0)                      # boto3 client for node 0
    ...
    g.stop()

Garage is AGPL: it is only run here as a separate process (installed by scripts/test.sh with
`cargo install --locked garage --version 2.5.0`), never linked or copied into this project.
Every process binds 127.0.0.1 only and writes its log into the given tmp directory.
"""
from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import weakref
from pathlib import Path

import boto3
import botocore.config

GARAGE_VERSION = "2.5.0"

# Backends still running when the interpreter exits (a bench script that raised, say) are stopped.
_running = weakref.WeakSet()


@atexit.register
def _stop_leftovers():
    for b in list(_running):
        try:
            b.stop()
        except Exception:  # noqa: BLE001
            pass


class BackendError(RuntimeError):
    """A backend could not be found, started or driven."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text[-lines:])


def _log_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except OSError:
        return False


def _clean_env(**extra) -> dict:
    """The environment for a backend process: no inherited GARAGE_*, AWS_* or proxy settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GARAGE_", "AWS_", "MOTO_")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(extra)
    return env


def _stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str, **config):
    """A boto3 S3 client for a test backend: path-style, one attempt, short timeouts."""
    cfg = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
               connect_timeout=5, read_timeout=30)
    cfg.update(config)
    return boto3.client("s3", endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=botocore.config.Config(**cfg))


def garage_binary() -> str:
    """The path of a `garage` 2.5.0 binary: on PATH, else in $CARGO_HOME/bin (~/.cargo/bin).

    Raises BackendError (tests must fail, not skip) when there is none or it is another version.
    """
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    candidates = []
    on_path = shutil.which("garage")
    if on_path:
        candidates.append(on_path)
    candidates.append(str(cargo_home / "bin" / "garage"))
    seen = []
    for c in candidates:
        if not os.access(c, os.X_OK):
            continue
        try:
            out = subprocess.run([c, "--version"], capture_output=True, text=True, timeout=30,
                                 env=_clean_env()).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            seen.append(f"{c}: {e}")
            continue
        # `garage --version` prints e.g. "garage cargo:2.5.0 [features: ...]" for a crates.io
        # build ("git:v2.5.0..." for one from a git checkout).
        first = out.splitlines()[0] if out else ""
        if re.search(r"(?<![\d.])" + re.escape(GARAGE_VERSION) + r"(?![\d.])", first):
            return c
        seen.append(f"{c}: says {out!r}")
    raise BackendError(
        f"garage {GARAGE_VERSION} not found on PATH or in {cargo_home / 'bin'}"
        + (f" ({'; '.join(seen)})" if seen else "")
        + f". Install it with: cargo install --locked garage --version {GARAGE_VERSION}"
        " (scripts/test.sh does this once per machine).")


class _GarageNode:
    def __init__(self, root: Path, index: int, rpc_secret: str, admin_token: str):
        self.index = index
        self.dir = root / f"node{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rpc_port, self.s3_port, self.admin_port = free_port(), free_port(), free_port()
        self.config = self.dir / "garage.toml"
        self.log_path = self.dir / "garage.log"
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.proc: subprocess.Popen | None = None
        self.node_id: str | None = None  # "<hex>@127.0.0.1:<rpc port>"
        self.stopped_on_purpose = False  # by kill(), terminate() or stop(): not a crash
        self.config.write_text(f"""\
metadata_dir = "{self.dir / 'meta'}"
data_dir = "{self.dir / 'data'}"
db_engine = "sqlite"
replication_factor = 3

rpc_bind_addr = "127.0.0.1:{self.rpc_port}"
rpc_public_addr = "127.0.0.1:{self.rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{self.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
admin_token = "{admin_token}"
""")

    def start(self, binary: str):
        self.stopped_on_purpose = False
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.config), "server"], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                env=_clean_env(RUST_LOG="info", NO_COLOR="1"))
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class GarageCluster:
    """A Garage 2.5.0 cluster of `nodes` processes on 127.0.0.1, replication_factor 3.

    Attributes: endpoints (S3 URLs, one per node, index 0..nodes-1), access_key, secret_key,
    region ("garage"), key_name, admin_token, admin_endpoints, tmp (where configs, data and logs
    live). Node indices are 0-based everywhere, matching `endpoints`.
    """

    def __init__(self, tmp: Path, nodes: int = 3, timeout: float = 90):
        if nodes < 3:
            raise ValueError("replication_factor 3 needs at least 3 nodes")
        self.binary = garage_binary()
        self.tmp = Path(tmp) / "garage"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.region = "garage"
        self.rpc_secret = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(32)
        self.key_name = "seedbucket-test"
        self.access_key = "GK" + secrets.token_hex(12)
        self.secret_key = secrets.token_hex(32)
        self.timeout = timeout
        self._nodes = [_GarageNode(self.tmp, i, self.rpc_secret, self.admin_token) for i in range(nodes)]
        self._clients = weakref.WeakSet()  # closed by stop(): Garage waits 10 s for open connections
        self._probe_bucket = "ready-probe-" + secrets.token_hex(6)
        _running.add(self)
        self.endpoints = [n.endpoint for n in self._nodes]
        self.admin_endpoints = [f"http://127.0.0.1:{n.admin_port}" for n in self._nodes]
        t0 = time.monotonic()
        try:
            for n in self._nodes:
                n.start(self.binary)
            deadline = time.monotonic() + timeout
            for n in self._nodes:
                self._wait(lambda n=n: _port_open(n.rpc_port), deadline, f"node {n.index} RPC port")
                n.node_id = self._wait(lambda n=n: self._node_id(n), deadline, f"node {n.index} id")
            self._connect_mesh(deadline)
            for n in self._nodes:
                self.garage("layout", "assign", "-z", "dc1", "-c", "1G", n.node_id.split("@")[0])
            self.garage("layout", "apply", "--version", "1")
            self.garage("key", "import", "--yes", self.access_key, self.secret_key, "-n", self.key_name)
            self.garage("key", "allow", "--create-bucket", self.key_name)
            self._wait_serving(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    # ---- driving the cluster ----

    def garage(self, *args: str, node: int = 0, check: bool = True) -> str:
        """Runs the garage CLI against node `node` (through its config) and returns its stdout."""
        cmd = [self.binary, "-c", str(self._nodes[node].config), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           env=_clean_env(RUST_LOG="warn"), stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise BackendError(f"`garage {' '.join(args)}` failed ({p.returncode}):\n"
                               f"{p.stdout}\n{p.stderr}\n{self.logs()}")
        return p.stdout

    def allow(self, bucket: str, node: int = 0) -> None:
        """Gives the test key read, write and owner rights on `bucket`.

        Needed for buckets made with `garage bucket create`; a bucket the key made itself through
        S3 CreateBucket is already its own (Garage grants it read, write and owner).
        """
        self.garage("bucket", "allow", "--read", "--write", "--owner", bucket, "--key", self.key_name, node=node)

    def create_bucket(self, bucket: str, node: int = 0) -> None:
        """Creates `bucket` with the admin CLI (not S3) and gives the test key full rights on it."""
        self.garage("bucket", "create", bucket, node=node)
        self.allow(bucket, node=node)

    def wait_bucket(self, bucket: str, timeout: float = 10) -> None:
        """Waits until every live node answers HeadBucket for `bucket` with 200.

        A bucket made by S3 CreateBucket through one node can be NoSuchBucket through another
        for some tens of milliseconds (seen up to about 0.3 s).
        """
        clients = [s3_client(n.endpoint, self.access_key, self.secret_key, self.region,
                             connect_timeout=2, read_timeout=10) for n in self._nodes if n.alive()]
        try:
            self._wait(lambda: all(c.head_bucket(Bucket=bucket) for c in clients),
                       time.monotonic() + timeout, f"bucket {bucket} on every live node")
        finally:
            for c in clients:
                c.close()

    def client(self, i: int = 0, **config):
        """A boto3 S3 client (path style, region "garage") for node i. stop() closes it."""
        c = s3_client(self.endpoints[i], self.access_key, self.secret_key, self.region, **config)
        self._clients.add(c)
        return c

    def kill(self, i: int) -> None:
        """SIGKILLs node i (no clean shutdown)."""
        n = self._nodes[i]
        n.stopped_on_purpose = True
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGKILL)
            n.proc.wait(10)

    def terminate(self, i: int) -> None:
        """Stops node i cleanly (SIGTERM, then SIGKILL after 15 s)."""
        self._nodes[i].stopped_on_purpose = True
        _stop_process(self._nodes[i].proc)

    def restart(self, i: int, timeout: float | None = None) -> None:
        """Starts node i again (killing it first if it still runs) and waits until its S3 API
        answers and a put/get round trip through it works."""
        n = self._nodes[i]
        if n.alive():
            self.kill(i)
        n.start(self.binary)
        deadline = time.monotonic() + (timeout or self.timeout)
        self._wait(lambda: _port_open(n.rpc_port), deadline, f"node {i} RPC port after restart")
        self._connect_mesh(deadline, only=i)
        self._wait(lambda: _port_open(n.s3_port), deadline, f"node {i} S3 port after restart")
        self._wait(lambda: self._round_trip([i]), deadline, f"node {i} serving S3 after restart")

    def alive(self, i: int) -> bool:
        return self._nodes[i].alive()

    def log_path(self, i: int) -> Path:
        return self._nodes[i].log_path

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"---- garage node {n.index} ({n.log_path}), last {lines} lines ----\n"
                         + _tail(n.log_path, lines) for n in self._nodes)

    def stop(self) -> None:
        """Stops every node: SIGTERM, then SIGKILL for those still running after 15 s.

        A node that gets SIGTERM waits up to 10 s for S3 clients' open keep-alive connections
        before it exits, so the clients made by client() are closed first; close your own
        clients (client.close()) and read or close every response body before stop() for a quick
        shutdown (an unread GetObject body keeps its connection out of the client's pool).
        """
        for c in list(self._clients):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        for n in self._nodes:
            n.stopped_on_purpose = True
            if n.alive():
                n.proc.terminate()
        for n in self._nodes:
            _stop_process(n.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- internals ----

    def _connect_mesh(self, deadline: float, only: int | None = None) -> None:
        """Connects every live node to every other live node (or only node `only`, both ways).

        Garage calls a peer over its own outgoing connection. Nodes connected only to node 0 learn
        of each other through peer-list exchange some seconds later; after losing a peer, a node
        retries it once and then only every 30 s; a node restarted soon after its first start has
        not saved its peer list. Without this, quorum calls through some nodes fail or hang for
        up to 30 s after a start or restart.
        """
        for a in self._nodes:
            for b in self._nodes:
                if a is b or not (a.alive() and b.alive()) or (only is not None and only not in (a.index, b.index)):
                    continue
                self._wait(lambda a=a, b=b: self._connect(a.index, b), deadline,
                           f"node {a.index} connecting to node {b.index}")

    def _connect(self, i: int, other: _GarageNode) -> bool:
        """`garage node connect` from node i to `other`; its exit status says if it worked."""
        p = subprocess.run([self.binary, "-c", str(self._nodes[i].config), "node", "connect", other.node_id],
                           capture_output=True, text=True, timeout=30, env=_clean_env(RUST_LOG="error"),
                           stdin=subprocess.DEVNULL)
        return p.returncode == 0

    def _node_id(self, n: _GarageNode):
        p = subprocess.run([self.binary, "-c", str(n.config), "node", "id", "-q"], capture_output=True,
                           text=True, timeout=30, env=_clean_env(RUST_LOG="error"), stdin=subprocess.DEVNULL)
        out = p.stdout.strip()
        return out if p.returncode == 0 and "@" in out else None

    def _wait(self, probe, deadline: float, what: str):
        last = None
        while True:
            dead = [n.index for n in self._nodes
                    if n.proc is not None and n.proc.poll() is not None and not n.stopped_on_purpose]
            if dead:
                raise BackendError(f"garage node(s) {dead} exited while waiting for {what}\n{self.logs()}")
            # A node whose S3 or admin API cannot bind its port logs it and keeps running.
            broken = [n.index for n in self._nodes if n.alive() and _log_has(n.log_path, "server exited with error")]
            if broken:
                raise BackendError(f"garage node(s) {broken} lost an API server (port taken?) while waiting "
                                   f"for {what}\n{self.logs()}")
            try:
                r = probe()
                if r:
                    return r
            except Exception as e:  # noqa: BLE001 - the probe's failures are what we wait out
                last = e
            if time.monotonic() > deadline:
                raise BackendError(f"timed out waiting for {what} (last error: {last!r})\n{self.logs()}")
            time.sleep(0.2)

    def _round_trip(self, nodes) -> bool:
        """list_buckets on every node, then a put on the first and a get on each, in a scratch
        bucket that is deleted again (a failed try may leave it behind: the next one reuses it)."""
        nodes = list(nodes)
        clients = [s3_client(self.endpoints[i], self.access_key, self.secret_key, self.region,
                             connect_timeout=2, read_timeout=10) for i in nodes]
        try:
            for c in clients:
                c.list_buckets()
            bucket, body = self._probe_bucket, secrets.token_bytes(1024)
            try:
                clients[0].create_bucket(Bucket=bucket)
            except clients[0].exceptions.BucketAlreadyOwnedByYou:
                pass
            clients[0].put_object(Bucket=bucket, Key="probe", Body=body)
            for c in clients:
                if c.get_object(Bucket=bucket, Key="probe")["Body"].read() != body:
                    raise BackendError("round trip returned other bytes")
            clients[0].delete_object(Bucket=bucket, Key="probe")
            clients[0].delete_bucket(Bucket=bucket)
            return True
        finally:
            for c in clients:
                c.close()

    def _wait_serving(self, deadline: float) -> None:
        self._wait(lambda: all(_port_open(n.s3_port) for n in self._nodes), deadline, "the S3 ports")
        self._wait(lambda: self._round_trip(range(len(self._nodes))), deadline,
                   "the cluster to serve S3 (list_buckets and a put/get round trip on every node)")


def _moto_server_command() -> list[str]:
    here = Path(sys.executable).parent / "moto_server"
    if here.exists():
        return [str(here)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    raise BackendError("moto_server not found: pip install -r tests/requirements.txt (moto[server])")


class MotoServer:
    """`moto_server` (PyPI moto[server]) on a free 127.0.0.1 port: an in-memory S3 mock.

    Attributes: endpoint, access_key, secret_key (moto accepts any), region ("us-east-1"), port,
    log_path. Methods: client(**config), logs(), stop().
    """

    def __init__(self, tmp: Path, timeout: float = 30):
        self.tmp = Path(tmp) / "moto"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = "motoaccesskey"
        self.secret_key = "motosecretkey"
        self.region = "us-east-1"
        self.log_path = self.tmp / "moto.log"
        t0 = time.monotonic()
        _running.add(self)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*_moto_server_command(), "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
        try:
            deadline = time.monotonic() + timeout
            last = None
            while True:
                if self.proc.poll() is not None:
                    raise BackendError(f"moto_server exited ({self.proc.returncode}):\n{self.logs()}")
                try:
                    self.client(connect_timeout=1, read_timeout=5).list_buckets()
                    break
                except Exception as e:  # noqa: BLE001
                    last = e
                if time.monotonic() > deadline:
                    raise BackendError(f"moto_server did not start (last error: {last!r}):\n{self.logs()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def client(self, **config):
        return s3_client(self.endpoint, self.access_key, self.secret_key, self.region, **config)

    def logs(self, lines: int = 60) -> str:
        return f"---- moto_server ({self.log_path}) ----\n" + _tail(self.log_path, lines)

    def stop(self) -> None:
        _stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
