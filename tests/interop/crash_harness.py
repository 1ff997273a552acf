"""Crash-safety harness: real boto3 clients write while the real server is SIGKILLed.

The model: every key is owned by one worker thread, so at most one operation is in flight per
key. A key's state is the set of contents it may hold: one value once a write is acknowledged,
two (old and new) while an overwrite, multipart completion or delete is in flight when the
server dies. After each restart the harness reads every key back and requires one of the
allowed contents, byte for byte, with its ETag and a torrent whose pieces are those bytes;
then the model collapses to what was read. Keys nobody wrote must not exist, the data dir
must hold no temporaries and exactly the blob files that the live objects and the open
multipart uploads need, and the database must open (the server starts and lists everything).
"""
import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import libtorrent as lt
from botocore.exceptions import ClientError

from conftest import Server, make_client

# Bodies up to this size live in the metadata database (crates/store/src/lib.rs INLINE_MAX).
INLINE_MAX = 64 * 1024
# The server's minimum size of a multipart part other than the last (MIN_PART_SIZE).
MIN_PART = 5 << 20
ABSENT = None


@dataclass(frozen=True)
class Content:
    """One object content: regenerated from its seed, so the model holds no bytes."""
    seed: int
    part_sizes: tuple  # one entry for a single PUT, one per part for a multipart upload
    multipart: bool

    @property
    def size(self):
        return sum(self.part_sizes)

    def parts(self):
        rng = random.Random(self.seed)
        return [rng.randbytes(n) for n in self.part_sizes]

    def data(self):
        return b"".join(self.parts())

    def etag(self):
        if not self.multipart:
            return hashlib.md5(self.data()).hexdigest()
        md5s = b"".join(hashlib.md5(p).digest() for p in self.parts())
        return f"{hashlib.md5(md5s).hexdigest()}-{len(self.part_sizes)}"

    def blob_sizes(self):
        """Sizes of the blob files this content occupies on disk (inline bodies have none)."""
        if self.multipart:
            return list(self.part_sizes)
        return [self.size] if self.size > INLINE_MAX else []


@dataclass
class Upload:
    """A multipart upload created and not yet completed or aborted."""
    key: str
    upload_id: str | None  # None while the create is in flight
    content: Content
    acked_parts: dict = field(default_factory=dict)    # part number -> ETag
    pending_parts: dict = field(default_factory=dict)  # in flight when the server died


@dataclass
class Stats:
    rounds: int = 0
    acked: int = 0
    in_flight_at_kill: int = 0
    resolved_new: int = 0
    resolved_old: int = 0
    torrents_checked: int = 0
    bytes_verified: int = 0
    ops: dict = field(default_factory=dict)

    def count(self, op):
        self.ops[op] = self.ops.get(op, 0) + 1


class CrashModel:
    def __init__(self, bucket, keys):
        self.bucket = bucket
        self.allowed = {k: {ABSENT} for k in keys}  # key -> set of Content | ABSENT
        self.info_hash = {}  # Content -> v1 info-hash a ?torrent answered with
        self.uploads = []    # Upload
        self.in_flight = {}  # key -> the outcome of the write in flight on it
        self.lock = threading.Lock()


class Worker(threading.Thread):
    """Drives random operations on its own keys until told to stop or the server dies."""

    def __init__(self, server_url_client, model, keys, rng, stats, stop):
        super().__init__(daemon=True)
        self.s3 = server_url_client
        self.m = model
        self.keys = keys
        self.rng = rng
        self.stats = stats
        self.stop = stop
        self.failure = None

    def run(self):
        while not self.stop.is_set():
            key = self.rng.choice(self.keys)
            op = self.rng.choices(
                ["put_small", "put_medium", "multipart", "delete", "torrent", "abandon_upload"],
                weights=[30, 30, 12, 10, 15, 3])[0]
            try:
                getattr(self, op)(key)
            except (AssertionError, ClientError) as e:
                # A wrong answer, or an S3 error from a live server: the run fails.
                self.failure = f"{op} {key}: {e!r}"
                return
            except Exception:
                # The server went away: whatever was in flight stays ambiguous.
                return

    def _content(self, part_sizes, multipart=False):
        return Content(self.rng.getrandbits(63), tuple(part_sizes), multipart)

    def _write(self, key, new, call):
        """Runs a write whose outcome is `new` (a Content or ABSENT) once acknowledged."""
        with self.m.lock:
            self.m.allowed[key] = self.m.allowed[key] | {new}
            self.m.in_flight[key] = new
        call()
        with self.m.lock:
            self.m.allowed[key] = {new}
            del self.m.in_flight[key]
            self.stats.acked += 1

    def put_small(self, key):
        c = self._content([self.rng.choice([0, 1, 17, 1000, 40_000, 60_000])])
        self._write(key, c, lambda: self.s3.put_object(Bucket=self.m.bucket, Key=key, Body=c.data()))
        self.stats.count("put_small")

    def put_medium(self, key):
        c = self._content([self.rng.randint(INLINE_MAX + 1000, 3 << 20)])
        self._write(key, c, lambda: self.s3.put_object(Bucket=self.m.bucket, Key=key, Body=c.data()))
        self.stats.count("put_medium")

    def delete(self, key):
        self._write(key, ABSENT, lambda: self.s3.delete_object(Bucket=self.m.bucket, Key=key))
        self.stats.count("delete")

    def multipart(self, key, complete=True):
        c = self._content([MIN_PART, self.rng.randint(1, 1 << 20)], multipart=True)
        up = Upload(key, None, c)
        with self.m.lock:
            self.m.uploads.append(up)
        up.upload_id = self.s3.create_multipart_upload(Bucket=self.m.bucket, Key=key)["UploadId"]
        for n, part in enumerate(c.parts(), start=1):
            up.pending_parts[n] = hashlib.md5(part).hexdigest()
            r = self.s3.upload_part(Bucket=self.m.bucket, Key=key, UploadId=up.upload_id,
                                    PartNumber=n, Body=part)
            up.acked_parts[n] = r["ETag"].strip('"')
            del up.pending_parts[n]
            assert up.acked_parts[n] == hashlib.md5(part).hexdigest()
        if not complete:
            self.stats.count("upload_left_open")
            return
        parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(up.acked_parts.items())]

        def call():
            r = self.s3.complete_multipart_upload(Bucket=self.m.bucket, Key=key, UploadId=up.upload_id,
                                                  MultipartUpload={"Parts": parts})
            assert r["ETag"].strip('"') == c.etag(), (r["ETag"], c.etag())
        self._write(key, c, call)
        with self.m.lock:
            self.m.uploads.remove(up)
        self.stats.count("multipart")

    def abandon_upload(self, key):
        self.multipart(key, complete=False)

    def torrent(self, key):
        with self.m.lock:
            allowed = set(self.m.allowed[key])
        if len(allowed) != 1 or ABSENT in allowed:
            return
        (c,) = allowed
        body = self.s3.get_object_torrent(Bucket=self.m.bucket, Key=key)["Body"].read()
        ih = check_torrent(body, c.data())
        with self.m.lock:
            known = self.m.info_hash.setdefault(c, ih)
        assert known == ih, f"{key}: ?torrent info-hash changed for the same bytes: {known} then {ih}"
        self.stats.count("torrent")


def check_torrent(body, data):
    """Checks a v1 .torrent against the object bytes; returns its info-hash (hex)."""
    meta = lt.bdecode(body)
    assert meta is not None, "the ?torrent answer is not bencode"
    info = meta[b"info"]
    assert info[b"length"] == len(data), (info[b"length"], len(data))
    plen = info[b"piece length"]
    want = b"".join(hashlib.sha1(data[i:i + plen]).digest() for i in range(0, len(data), plen))
    assert info[b"pieces"] == want, "torrent piece hashes do not match the object bytes"
    ih = hashlib.sha1(lt.bencode(info)).hexdigest()
    if data:  # (libtorrent refuses a torrent of an empty file)
        assert str(lt.torrent_info(body).info_hashes().v1) == ih
    return ih


def blob_files(data_dir: Path):
    out = []
    for shard in (data_dir / "blobs").iterdir():
        out += [p for p in shard.iterdir()]
    return out


class CrashRun:
    """Rounds of: start the server on the same data dir, verify, write concurrently, SIGKILL."""

    def __init__(self, tmp: Path, seed: int, workers=4, keys_per_worker=5, log=print):
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.seed = seed
        self.log = log
        self.stats = Stats()
        self.worker_keys = [[f"w{w}/k{i}.bin" for i in range(keys_per_worker)] for w in range(workers)]
        self.model = CrashModel("crash", [k for ks in self.worker_keys for k in ks])
        self.server = None

    def start(self):
        self.server = Server(self.tmp)  # same data dir every time; a fresh port
        return make_client(self.server)

    def round(self):
        s3 = self.start()
        if self.stats.rounds == 0:
            s3.create_bucket(Bucket=self.model.bucket)
        self.verify(s3)
        stop = threading.Event()
        workers = [Worker(make_client(self.server), self.model, keys,
                          random.Random(self.rng.getrandbits(64)), self.stats, stop)
                   for keys in self.worker_keys]
        for w in workers:
            w.start()
        time.sleep(self.rng.uniform(0.3, 2.5))
        self.server.proc.kill()  # SIGKILL, at a random moment of the workload
        stop.set()
        self.server.proc.wait()
        for w in workers:
            w.join(30)
            assert not w.is_alive(), "a client hung after the server died"
            assert w.failure is None, w.failure
        with self.model.lock:
            self.stats.in_flight_at_kill += len(self.model.in_flight)
        self.stats.rounds += 1

    def finish(self):
        """The last restart: verify, then stop the server."""
        s3 = self.start()
        try:
            self.verify(s3)
        finally:
            self.server.stop()

    # ---- checks after a restart ----

    def verify(self, s3):
        m = self.model
        tmp_left = list((self.server.data_dir / "tmp").iterdir())
        assert not tmp_left, f"temporaries left after restart: {tmp_left}"
        listed = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=m.bucket):
            for o in page.get("Contents", []):
                listed[o["Key"]] = o
        unknown = set(listed) - set(m.allowed)
        assert not unknown, f"keys nobody wrote are visible: {unknown}"
        for key, allowed in m.allowed.items():
            got = self._read(s3, key)
            if got is ABSENT:
                assert ABSENT in allowed, f"{key}: acknowledged content lost (now absent)"
                assert key not in listed, f"{key}: listed but absent"
                resolved = ABSENT
            else:
                data, etag = got
                matches = [c for c in allowed if c is not ABSENT and c.size == len(data) and c.data() == data]
                assert matches, (f"{key}: {len(data)} bytes read back match no acknowledged or in-flight "
                                 f"content (allowed sizes {[c and c.size for c in allowed]})")
                resolved = matches[0]
                assert etag == resolved.etag(), f"{key}: ETag {etag} != {resolved.etag()}"
                assert listed[key]["Size"] == len(data) and listed[key]["ETag"].strip('"') == etag, key
                body = s3.get_object_torrent(Bucket=m.bucket, Key=key)["Body"].read()
                ih = check_torrent(body, data)
                known = m.info_hash.setdefault(resolved, ih)
                assert known == ih, f"{key}: info-hash {ih} differs from the one issued before the crash {known}"
                self.stats.torrents_checked += 1
                self.stats.bytes_verified += len(data)
            if key in m.in_flight:
                # Either side of a write cut by the kill is allowed; count which one won.
                if resolved == m.in_flight.pop(key):
                    self.stats.resolved_new += 1
                else:
                    self.stats.resolved_old += 1
            m.allowed[key] = {resolved}
        self._verify_uploads(s3)
        self._verify_blobs()

    def _read(self, s3, key):
        try:
            r = s3.get_object(Bucket=self.model.bucket, Key=key)
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return ABSENT
            raise
        return r["Body"].read(), r["ETag"].strip('"')

    def _verify_uploads(self, s3):
        m = self.model
        open_ids = {}
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=m.bucket):
            for u in page.get("Uploads", []):
                open_ids[u["UploadId"]] = u["Key"]
        known = {u.upload_id: u for u in m.uploads if u.upload_id}
        # An upload whose create was in flight may exist under an id the client never saw.
        unseen = [u for u in m.uploads if u.upload_id is None]
        for uid, key in open_ids.items():
            if uid in known:
                assert known[uid].key == key
                continue
            match = [u for u in unseen if u.key == key]
            assert match, f"an upload nobody created is listed: {key} {uid}"
            match[0].upload_id = uid
            unseen.remove(match[0])
        still = []
        for u in m.uploads:
            if u.upload_id is None:
                continue  # its create never reached the database
            if u.upload_id not in open_ids:
                # Gone: only a completion (in flight at the kill) removes an upload we keep.
                assert m.allowed[u.key] == {u.content}, \
                    f"{u.key}: upload {u.upload_id} vanished but its object is not there"
                continue
            assert m.allowed[u.key] != {u.content}, f"{u.key}: completed upload still listed"
            parts = s3.list_parts(Bucket=m.bucket, Key=u.key, UploadId=u.upload_id).get("Parts", [])
            got = {p["PartNumber"]: p["ETag"].strip('"') for p in parts}
            for n, etag in u.acked_parts.items():
                assert got.get(n) == etag, f"{u.key}: acknowledged part {n} lost or changed"
            for n, etag in got.items():
                assert u.acked_parts.get(n) == etag or u.pending_parts.get(n) == etag, \
                    f"{u.key}: part {n} nobody uploaded is listed"
            u.acked_parts = dict(got)
            u.pending_parts = {}
            still.append(u)
        m.uploads = still
        # Abort the open uploads now and then, so parts are also released across crashes.
        for u in list(m.uploads):
            if self.rng.random() < 0.5:
                s3.abort_multipart_upload(Bucket=m.bucket, Key=u.key, UploadId=u.upload_id)
                m.uploads.remove(u)

    def _verify_blobs(self):
        """The blob files are exactly those of the live objects and open uploads' parts: the
        orphan sweep and the garbage collector run just after start, so this polls a while."""
        m = self.model
        want = []
        for allowed in m.allowed.values():
            (c,) = allowed
            if c is not ABSENT:
                want += c.blob_sizes()
        for u in m.uploads:
            want += [u.content.part_sizes[n - 1] for n in u.acked_parts]
        want.sort()
        deadline = time.time() + 15
        while True:
            files = blob_files(self.server.data_dir)
            have = sorted(p.stat().st_size for p in files if p.exists())
            if have == want:
                return
            if time.time() > deadline:
                raise AssertionError(
                    f"blob files on disk ({len(have)}) are not those of the live objects ({len(want)}): "
                    f"extra sizes {sorted(set(have) - set(want))[:10]}, missing {sorted(set(want) - set(have))[:10]}")
            time.sleep(0.1)
