"""Soak: mixed S3 traffic (boto3), HTTP tracker announces and concurrent aria2c torrent
downloads against one real server for SEEDBUCKET_SOAK_SECONDS (default 60, the CI run; the
full run is 600: `SEEDBUCKET_SOAK_SECONDS=600 .venv/bin/pytest -q -s tests/interop/test_soak.py`).

Checks: zero failed requests of any kind; every download byte-identical to its object; every
object verified at the end; and flat memory: the server's VmRSS, sampled every second, stays
within MEMORY_SLACK_MIB of its peak over the first quarter of the run (after warm-up) for the
rest of the run (a leak of a few KiB per request would break this over ten minutes)."""
import hashlib
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import libtorrent as lt

from conftest import Server, _free_port, make_client
from test_get_object_torrent import ARIA

SECONDS = int(os.environ.get("SEEDBUCKET_SOAK_SECONDS", "60"))
MEMORY_SLACK_MIB = 64
BUCKET = "soak"
KEYS = 40           # objects the S3 workers churn through
SEEDS = 4           # objects that torrent downloads fetch (public and private)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Soak:
    def __init__(self, server, tmp: Path):
        self.server = server
        self.tmp = tmp
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.objects = {}   # key -> sha256 of the acknowledged content (None: deleted)
        self.failures = []
        self.counts = {"s3": 0, "announce": 0, "download": 0, "download_bytes": 0}
        self.rss = []       # (seconds since start, KiB)
        self.started = time.time()

    def fail(self, what):
        with self.lock:
            self.failures.append(what)
        self.stop.set()

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    # ---- S3 traffic: each worker owns its keys, so the model is exact ----

    def s3_worker(self, n, keys):
        s3 = make_client(self.server)
        rng = random.Random(n)
        while not self.stop.is_set():
            key = rng.choice(keys)
            op = rng.choices(["put", "get", "head", "list", "delete", "multipart", "copy"],
                             weights=[30, 30, 10, 8, 8, 4, 5])[0]
            try:
                self.s3_op(s3, rng, op, key)
            except Exception as e:  # any failed request fails the soak
                self.fail(f"S3 {op} {key}: {e!r}")
                return

    def s3_op(self, s3, rng, op, key):
        want = self.objects.get(key)
        if op == "put":
            data = rng.randbytes(rng.choice([0, 100, 50_000, 300_000, 2_000_000]))
            r = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()
            self.objects[key] = sha(data)
        elif op == "multipart":
            parts = [rng.randbytes(5 << 20), rng.randbytes(rng.randint(1, 300_000))]
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            etags = [s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
                     for i, p in enumerate(parts)]
            s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
            self.objects[key] = sha(b"".join(parts))
            self.count("s3", 3)
        elif op == "copy":
            if want is None:
                return
            dst = key + ".copy"
            s3.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": key})
            self.objects[dst] = want
        elif op == "get":
            if want is None:
                return
            got = sha(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            assert got == want, f"{key} read back different bytes"
        elif op == "head":
            if want is None:
                return
            s3.head_object(Bucket=BUCKET, Key=key)
        elif op == "list":
            s3.list_objects_v2(Bucket=BUCKET, Prefix=key.split("/")[0] + "/", MaxKeys=50)
        elif op == "delete":
            s3.delete_object(Bucket=BUCKET, Key=key)
            self.objects[key] = None
        self.count("s3")

    # ---- tracker announces from made-up peers ----

    def announcer(self, announce_urls):
        rng = random.Random(99)
        # A fixed crowd of made-up peers that come and go, as real ones re-announce.
        peers = [(rng.randbytes(20), rng.randint(1024, 65535)) for _ in range(16)]
        while not self.stop.is_set():
            url, ih = rng.choice(announce_urls)
            peer_id, port = rng.choice(peers)
            q = urllib.parse.urlencode({
                "info_hash": ih, "peer_id": peer_id, "port": port,
                "uploaded": 0, "downloaded": 0, "left": rng.choice([0, 1000]), "compact": 1,
                "event": rng.choice(["started", "", "stopped"])})
            try:
                with urllib.request.urlopen(url + ("&" if "?" in url else "?") + q, timeout=30) as r:
                    reply = lt.bdecode(r.read())
                assert reply is not None and b"failure reason" not in reply, reply
                assert b"interval" in reply
            except Exception as e:
                self.fail(f"announce: {e!r}")
                return
            self.count("announce")
            time.sleep(0.1)  # 10 a second: under the tracker's per-address rate limit

    # ---- torrent downloads with aria2c (seeder and webseed) ----

    def downloader(self, n, seeds):
        rng = random.Random(1000 + n)
        i = 0
        while not self.stop.is_set():
            key, data_sha, tfile = rng.choice(seeds)
            out = self.tmp / f"dl{n}-{i}"
            i += 1
            p = subprocess.run(["aria2c", "-d", str(out), *ARIA, f"--listen-port={_free_port()}",
                                str(tfile)], capture_output=True, text=True, timeout=300)
            got = out / key.rsplit("/", 1)[-1]
            if p.returncode != 0 or not got.exists() or sha(got.read_bytes()) != data_sha:
                self.fail(f"aria2c download of {key} (exit {p.returncode}): {p.stdout[-1500:]}")
                return
            self.count("download")
            self.count("download_bytes", got.stat().st_size)
            shutil.rmtree(out)

    def sampler(self):
        pid = self.server.proc.pid
        while not self.stop.wait(1.0):
            self.rss.append((time.time() - self.started, vm_rss_kib(pid)))


def test_soak(tmp_path):
    server = Server(tmp_path)
    try:
        run_soak(server, tmp_path)
    finally:
        server.stop()


def run_soak(server, tmp_path):
    s3 = make_client(server)
    s3.create_bucket(Bucket=BUCKET)
    soak = Soak(server, tmp_path)

    # The objects torrent clients fetch: half public, half private (tokens in the URLs).
    seeds, announce_urls = [], []
    for i in range(SEEDS):
        data = os.urandom(3_000_000 + 1000 * i)
        key = f"seed/obj{i}.bin"
        extra = {"ACL": "public-read"} if i % 2 == 0 else {}
        s3.put_object(Bucket=BUCKET, Key=key, Body=data, **extra)
        body = s3.get_object_torrent(Bucket=BUCKET, Key=key)["Body"].read()
        meta = lt.bdecode(body)
        tfile = tmp_path / f"obj{i}.torrent"
        tfile.write_bytes(body)
        seeds.append((key, sha(data), tfile))
        announce_urls.append((meta[b"announce"].decode(),
                              bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))))
        soak.objects[key] = sha(data)

    workers = [threading.Thread(target=soak.s3_worker, args=(n, [f"w{n}/k{i}" for i in range(KEYS // 4)]))
               for n in range(4)]
    workers += [threading.Thread(target=soak.announcer, args=(announce_urls,))]
    workers += [threading.Thread(target=soak.downloader, args=(n, seeds)) for n in range(2)]
    workers += [threading.Thread(target=soak.sampler)]
    for w in workers:
        w.daemon = True
        w.start()
    soak.stop.wait(SECONDS)
    soak.stop.set()
    for w in workers:
        w.join(330)
        assert not w.is_alive(), "a soak worker hung"
    assert not soak.failures, soak.failures[:5]
    assert server.proc.poll() is None, "the server died"

    # Every object, verified at the end: the listing is the model, and each reads back.
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            listed[o["Key"]] = o["Size"]
    live = {k: v for k, v in soak.objects.items() if v is not None}
    assert set(listed) == set(live), (set(listed) ^ set(live))
    for key, want in live.items():
        assert sha(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == want, key

    # Flat memory: after the first quarter (warm-up included), no higher than that quarter's
    # peak plus the slack.
    rss = soak.rss
    assert len(rss) >= 8, "too few memory samples"
    quarter = max(1, len(rss) // 4)
    early_peak = max(k for _, k in rss[:quarter])
    late_peak = max(k for _, k in rss[quarter:])
    c = soak.counts
    print(f"\nsoak: {SECONDS} s; {c['s3']} S3 requests, {c['announce']} announces, {c['download']} aria2c "
          f"downloads ({c['download_bytes'] / 2**20:.0f} MiB), 0 failures; {len(live)} objects verified; "
          f"VmRSS first-quarter peak {early_peak / 1024:.1f} MiB, later peak {late_peak / 1024:.1f} MiB, "
          f"final {rss[-1][1] / 1024:.1f} MiB")
    assert c["s3"] > 0 and c["announce"] > 0 and c["download"] > 0
    assert late_peak <= early_peak + MEMORY_SLACK_MIB * 1024, \
        f"memory grew: {early_peak} KiB in the first quarter, {late_peak} KiB later"
