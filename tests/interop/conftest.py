"""Fixtures: the real seedbucket binary on a free 127.0.0.1 port, and real clients for it."""
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import botocore.config
import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "SBINTEROPROOTKEY0001"
SECRET_KEY = "interop-root-secret-0123456789abcdefghijk"
# A small torrent size limit, so the limit is testable with small objects.
TORRENT_MAX = 20_000_000


def _binary() -> str:
    b = os.environ.get("SEEDBUCKET_BIN") or str(ROOT / "target" / "release" / "seedbucket")
    if not os.path.exists(b):
        raise RuntimeError(f"no seedbucket binary at {b}: cargo build --release -p seedbucket")
    return b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, extra=(), admin=False, backend=None, port=None, host="127.0.0.1",
                 data_dir=None, torrent_max=TORRENT_MAX):
        """`backend`: an S3 backend (see gateway_args) to run in front of, in gateway mode.
        `host`: the address the S3 port and the seeder listen on (a test's own namespace
        address when a client must reach it from there).
        `data_dir`: where the data lives (default `tmp/data`).
        `torrent_max`: the largest object with a torrent (--torrent-max-size)."""
        self.data_dir = Path(data_dir) if data_dir else tmp / "data"
        self.backend_args, backend_env = gateway_args(backend) if backend else ([], {})
        self.port = port or _free_port()
        self.admin_port = _free_port() if admin else None
        extra = list(extra)
        if admin:
            extra += ["--admin-listen", f"127.0.0.1:{self.admin_port}"]
        elif "--admin-listen" not in extra:
            # Not the default 127.0.0.1:9001: servers of a test run would take turns at it.
            extra += ["--admin-listen", "off"]
        self.url = f"http://{host}:{self.port}"
        self.log = open(tmp / "server.log", "w+")
        env = dict(os.environ, SEEDBUCKET_ROOT_ACCESS_KEY=ACCESS_KEY,
                   SEEDBUCKET_ROOT_SECRET_KEY=SECRET_KEY,
                   RUST_LOG=os.environ.get("SEEDBUCKET_TEST_RUST_LOG", "warn"), **backend_env)
        self.env = env
        self.proc = subprocess.Popen(
            [_binary(), "serve", "--data-dir", str(self.data_dir), "--listen", f"{host}:{self.port}",
             "--torrent-max-size", str(torrent_max), "--peer-listen", f"{host}:0",
             *self.backend_args, *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_seedbucket/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("seedbucket did not start:\n" + self.logs())

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def uploaded_bytes(self) -> int:
        """Object bytes the server sent to BitTorrent clients (peer wire and webseed)."""
        m = self.metrics()
        return int(m['seedbucket_uploaded_bytes_total{via="peer"}'] + m['seedbucket_uploaded_bytes_total{via="webseed"}'])

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def create_key(self, name: str):
        out = subprocess.run([_binary(), "key", "create", name, "--data-dir", str(self.data_dir),
                              *self.backend_args], env=self.env,
                             check=True, capture_output=True, text=True).stdout
        if self.backend_args:
            time.sleep(2.5)  # gateway nodes re-read the keys every 2 s
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return fields["access key"].strip(), fields["secret key"].strip(), fields["user id"].strip()


def gateway_args(backend):
    """Flags and environment that put a seedbucket in front of `backend` (gateway mode).
    `backend` has endpoint, access_key, secret_key, region (a Server in embedded mode, a
    GarageCluster, a MotoServer)."""
    endpoint = backend.endpoints[0] if hasattr(backend, "endpoints") else getattr(backend, "endpoint", None) or backend.url
    args = ["--backend", "s3", "--backend-endpoint", endpoint, "--backend-path-style",
            "--backend-region", getattr(backend, "region", "us-east-1")]
    env = {"SEEDBUCKET_BACKEND_ACCESS_KEY": getattr(backend, "access_key", ACCESS_KEY),
           "SEEDBUCKET_BACKEND_SECRET_KEY": getattr(backend, "secret_key", SECRET_KEY)}
    return args, env


def start_backend(kind: str, tmp: Path):
    """A real S3 backend on 127.0.0.1: `seedbucket` (embedded mode), `garage` (3 nodes) or `moto`."""
    from backends import GarageCluster, MotoServer
    (tmp / kind).mkdir(parents=True, exist_ok=True)
    if kind == "seedbucket":
        return Server(tmp / kind)
    if kind == "garage":
        return GarageCluster(tmp / kind)
    if kind == "moto":
        return MotoServer(tmp / kind)
    raise RuntimeError(f"unknown backend {kind!r}")


# SEEDBUCKET_TEST_BACKEND=seedbucket|garage|moto runs the suites against a gateway in front of
# that backend instead of an embedded server (scripts/test.sh does this for the S3 suites).
TEST_BACKEND = os.environ.get("SEEDBUCKET_TEST_BACKEND", "embedded")


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as tmp:
        backend = None if TEST_BACKEND == "embedded" else start_backend(TEST_BACKEND, Path(tmp))
        s = Server(Path(tmp), backend=backend)
        yield s
        s.stop()
        if backend is not None:
            backend.stop()
        if s.proc.returncode not in (0, -15):
            print(s.logs())


def run_transmission(prefix, cfg, tfile, tmp_path, name, size, timeout=120):
    """Runs transmission-cli (after `prefix`, e.g. `ip netns exec NS`) with the settings
    directory `cfg` on `tfile` until `name` is complete (`size` bytes, and transmission's
    done script ran); returns the downloaded file's path."""
    out = tmp_path / "out"
    out.mkdir()
    done = tmp_path / "done.sh"
    done.write_text(f"#!/bin/sh\ntouch {tmp_path}/finished\n")
    done.chmod(0o755)
    log_path = tmp_path / "transmission.log"
    with open(log_path, "wb") as log:
        p = subprocess.Popen([*prefix, "transmission-cli", "-g", str(cfg), "-w", str(out), "-f", str(done),
                              str(tfile)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    target = out / name
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (tmp_path / "finished").exists() and target.exists() and target.stat().st_size == size:
                return target
            time.sleep(0.2)
        # transmission-cli redraws its progress line with carriage returns: show the last ones.
        said = log_path.read_bytes().decode(errors="replace").replace("\r", "\n").splitlines()
        raise AssertionError(f"transmission did not finish {name} in {timeout}s; it said last:\n"
                             + "\n".join(line for line in said if line.strip())[-3000:])
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)


def make_client(server, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
    return boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config))


@pytest.fixture
def s3(server):
    return make_client(server)


@pytest.fixture
def bucket(s3):
    name = "b-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws(server, tmp_path):
    """Runs aws-cli against the server; returns the CompletedProcess."""
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\n")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")

    def run(*args, check=True):
        p = subprocess.run(["aws", "--endpoint-url", server.url, *args], env=env,
                           capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p
    return run
