"""Gateway mode (`--backend s3`): what only a gateway does. The S3, torrent, webseed, seeder and
tracker suites also run against gateways (scripts/test.sh sets SEEDBUCKET_TEST_BACKEND).

- objects written straight into the backend get correct torrents, served by the seeder and the
  webseed; once the backend object changes, the old torrent is refused everywhere;
- two gateway nodes on one backend share keys and give byte-identical torrents;
- a stopped backend gives clear 503s, loses nothing, and everything resumes when it returns;
- a Garage cluster with one node killed keeps serving objects and torrents.
"""
import base64
import hashlib
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.exceptions
import libtorrent as lt
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, Server, make_client
from test_get_object_torrent import reference_hashes, torrent_of
from test_seeder import SESSION, lt_download, without_webseed
from test_tracker import announce
from test_webseed import webseed_only


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def backend():
    """An embedded seedbucket as the backend; restartable on the same port and data dir."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "backend-root").mkdir()
        b = Server(Path(tmp) / "backend-root")
        b.tmp = Path(tmp)
        yield b
        b.stop()


@pytest.fixture(scope="module")
def gateway(backend):
    with tempfile.TemporaryDirectory() as tmp:
        g = Server(Path(tmp), backend=backend)
        yield g
        g.stop()


def backend_client(backend):
    return make_client(backend)


def fresh_bucket(client):
    name = "gw-" + os.urandom(5).hex()
    client.create_bucket(Bucket=name)
    return name


def info_hashes(body: bytes):
    return lt.torrent_info(lt.bdecode(body)).info_hashes()


def status_of(url):
    try:
        with urllib.request.urlopen(url) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_an_object_put_straight_into_the_backend_gets_a_correct_torrent(backend, gateway, tmp_path):
    direct = backend_client(backend)
    bucket = fresh_bucket(direct)  # made in the backend, unknown to the gateway until now
    data = os.urandom(3_000_000 + 17)
    direct.put_object(Bucket=bucket, Key="direct/weights.bin", Body=data)
    s3 = make_client(gateway)
    # ACLs are the gateway's own: the backend bucket and object belong to its root key.
    s3.put_object_acl(Bucket=bucket, Key="direct/weights.bin", ACL="public-read")
    assert s3.get_object(Bucket=bucket, Key="direct/weights.bin")["Body"].read() == data
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["direct/weights.bin"]

    for fmt in ["v1", "hybrid"]:
        body = torrent_of(s3, bucket, "direct/weights.bin", fmt)["Body"].read()
        meta = lt.bdecode(body)
        piece_length = meta[b"info"][b"piece length"]
        ours, ref = info_hashes(body), reference_hashes(tmp_path, "weights.bin", data, piece_length, fmt)
        assert str(ours.v1) == str(ref.v1)
        if fmt == "hybrid":
            assert str(ours.v2) == str(ref.v2)
    meta = lt.bdecode(torrent_of(s3, bucket, "direct/weights.bin", "v1")["Body"].read())
    # The seeder alone (no webseed, no tracker: the peer is given), then the webseed alone.
    seeder = lt_download(tmp_path, without_webseed(meta), name="seeder")
    assert sha((seeder / "weights.bin").read_bytes()) == sha(data)
    webseed = lt_download(tmp_path, webseed_only(meta), name="webseed")
    assert sha((webseed / "weights.bin").read_bytes()) == sha(data)

    # Overwritten in the backend: the old torrent is refused everywhere, the new one is correct.
    old_ws = meta[b"url-list"]
    old_ws = (old_ws[0] if isinstance(old_ws, list) else old_ws).decode()
    old_v1 = bytes.fromhex(str(info_hashes(lt.bencode(meta)).v1))
    new_data = os.urandom(2_000_000 + 3)
    direct.put_object(Bucket=bucket, Key="direct/weights.bin", Body=new_data)
    assert status_of(old_ws) == 410
    # The tracker's read checks are cached for 5 s (docs/deployment.md); reads are exact.
    deadline = time.time() + 10
    while b"failure reason" not in (reply := announce(meta[b"announce"].decode(), old_v1, b"O" * 20, 7011, 100)):
        assert time.time() < deadline, reply
        time.sleep(0.5)
    new = torrent_of(s3, bucket, "direct/weights.bin", "v1")["Body"].read()
    new_meta = lt.bdecode(new)
    (tmp_path / "n").mkdir()
    # A new version has no ACL of the gateway's yet: private, so its torrent is private.
    ref = reference_hashes(tmp_path / "n", "weights.bin", new_data, new_meta[b"info"][b"piece length"], "v1",
                           private=True)
    assert str(info_hashes(new).v1) == str(ref.v1) != str(info_hashes(lt.bencode(meta)).v1)
    again = lt_download(tmp_path, without_webseed(new_meta), name="again")
    assert sha((again / "weights.bin").read_bytes()) == sha(new_data)


def test_a_second_node_shares_keys_and_gives_identical_torrents(backend, gateway):
    with tempfile.TemporaryDirectory() as tmp:
        # Nodes behind one load balancer share --public-url: every URL they hand out is its.
        second = Server(Path(tmp), backend=backend, extra=["--public-url", gateway.url])
        try:
            s3 = make_client(gateway)
            bucket = fresh_bucket(s3)
            data = os.urandom(1_500_000)
            s3.put_object(Bucket=bucket, Key="shared.bin", Body=data, ACL="public-read")
            other = make_client(second)
            assert other.get_object(Bucket=bucket, Key="shared.bin")["Body"].read() == data
            for fmt in ["v1", "hybrid", "v2"]:
                a = torrent_of(s3, bucket, "shared.bin", fmt)["Body"].read()
                b = torrent_of(other, bucket, "shared.bin", fmt)["Body"].read()
                assert a == b, fmt
            # A key made (with the CLI, in gateway mode) through the first node's settings works on
            # the second node, and owns what it creates there.
            ak, sk, user = gateway.create_key("gw-user")
            mine = make_client(second, ak, sk)
            deadline = time.time() + 10
            while True:
                try:
                    own = fresh_bucket(mine)
                    break
                except botocore.exceptions.ClientError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.5)
            assert make_client(gateway, ak, sk).get_bucket_acl(Bucket=own)["Owner"]["ID"] == user
            with pytest.raises(botocore.exceptions.ClientError) as e:
                mine.put_object(Bucket=bucket, Key="not-mine.bin", Body=b"x")
            assert e.value.response["Error"]["Code"] == "AccessDenied"
        finally:
            second.stop()


def restart(backend):
    return Server(backend.tmp / "backend-root", port=backend.port)


def test_a_stopped_backend_gives_503_and_everything_resumes(backend, gateway, tmp_path):
    s3 = make_client(gateway)
    bucket = fresh_bucket(s3)
    data = os.urandom(16_000_000 + 5)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=data, ACL="public-read")
    meta = without_webseed(lt.bdecode(torrent_of(s3, bucket, "big.bin", "v1")["Body"].read()))

    # A download from the seeder, slowed down so that the backend stops in its middle.
    ses = lt.session(dict(SESSION, download_rate_limit=2_000_000, ignore_limits_on_local_network=False))
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    atp.save_path = str(tmp_path / "leech")
    h = ses.add_torrent(atp)
    try:
        deadline = time.time() + 30
        while h.status().progress < 0.1:
            assert time.time() < deadline, f"the download did not start: {h.status().state}"
            time.sleep(0.1)
        assert h.status().progress < 0.9
        backend.stop()
        try:
            # Clear errors, in S3's form, while the backend is away.
            with pytest.raises(botocore.exceptions.ClientError) as e:
                s3.put_object(Bucket=bucket, Key="during.bin", Body=os.urandom(200_000))
            assert e.value.response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown")
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert "127.0.0.1" not in e.value.response["Error"].get("Message", "")
            with pytest.raises(botocore.exceptions.ClientError) as e:
                s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            time.sleep(2)
        finally:
            revived = restart(backend)
            backend.proc, backend.log = revived.proc, revived.log
        # The download finishes without a restart of anything but the backend.
        deadline = time.time() + 120
        while not h.status().is_seeding:
            assert time.time() < deadline, f"stalled at {h.status().progress}"
            time.sleep(0.2)
    finally:
        ses.remove_torrent(h)
    assert sha((tmp_path / "leech" / "big.bin").read_bytes()) == sha(data)
    # Nothing half-written: the PUT that failed left no object, and writes work again.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="during.bin")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.put_object(Bucket=bucket, Key="after.bin", Body=b"back")
    assert s3.get_object(Bucket=bucket, Key="after.bin")["Body"].read() == b"back"


def test_a_put_cut_by_the_backend_leaves_no_object(backend, gateway):
    s3 = make_client(gateway)
    bucket = fresh_bucket(s3)
    data = os.urandom(64 * 1024 * 1024)
    result = {}

    def put():
        try:
            slow = make_client(gateway)
            slow.put_object(Bucket=bucket, Key="cut.bin", Body=data)
            result["ok"] = True
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=put)
    t.start()
    time.sleep(0.15)
    backend.proc.kill()
    backend.proc.wait(10)
    t.join(60)
    revived = restart(backend)
    backend.proc, backend.log = revived.proc, revived.log
    if "error" in result:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket=bucket, Key="cut.bin")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    else:
        # The PUT finished before the kill: then it is whole.
        assert sha(s3.get_object(Bucket=bucket, Key="cut.bin")["Body"].read()) == sha(data)


def test_garage_with_one_node_killed_keeps_serving(tmp_path):
    from backends import GarageCluster
    cluster = GarageCluster(tmp_path / "garage")
    gw = None
    try:
        gw = Server(tmp_path, backend=cluster)
        s3 = make_client(gw)
        bucket = fresh_bucket(s3)
        data = os.urandom(2_000_000 + 11)
        s3.put_object(Bucket=bucket, Key="g.bin", Body=data, ACL="public-read")
        body = torrent_of(s3, bucket, "g.bin", "hybrid")["Body"].read()
        cluster.kill(2)
        assert s3.get_object(Bucket=bucket, Key="g.bin")["Body"].read() == data
        assert torrent_of(s3, bucket, "g.bin", "hybrid")["Body"].read() == body
        meta = lt.bdecode(body)
        out = lt_download(tmp_path, webseed_only(meta), name="ws")
        assert sha((out / "g.bin").read_bytes()) == sha(data)
        out = lt_download(tmp_path, without_webseed(meta), name="peer")
        assert sha((out / "g.bin").read_bytes()) == sha(data)
        s3.put_object(Bucket=bucket, Key="written-after.bin", Body=b"still writable")
        assert s3.get_object(Bucket=bucket, Key="written-after.bin")["Body"].read() == b"still writable"
    finally:
        if gw is not None:
            gw.stop()
        cluster.stop()


def test_copy_object_stays_in_the_backend_and_keeps_the_torrent(backend, gateway, tmp_path):
    s3 = make_client(gateway)
    bucket = fresh_bucket(s3)
    data = os.urandom(3_000_000 + 1)
    s3.put_object(Bucket=bucket, Key="src/model.bin", Body=data)
    src_torrent = torrent_of(s3, bucket, "src/model.bin", "hybrid")["Body"].read()
    out = s3.copy_object(Bucket=bucket, Key="dst/model.bin", CopySource={"Bucket": bucket, "Key": "src/model.bin"},
                         ACL="public-read", MetadataDirective="REPLACE", ContentType="application/x-model",
                         Metadata={"origin": "copy"})
    head = s3.head_object(Bucket=bucket, Key="dst/model.bin")
    assert head["ContentType"] == "application/x-model" and head["Metadata"] == {"origin": "copy"}
    assert head["ETag"] == out["CopyObjectResult"]["ETag"]
    # The copy is in the backend itself, under the same bytes.
    direct = backend_client(backend)
    assert direct.get_object(Bucket=bucket, Key="dst/model.bin")["Body"].read() == data
    # Same bytes and name, public now: the same pieces, an open torrent that downloads.
    dst = lt.bdecode(torrent_of(s3, bucket, "dst/model.bin", "hybrid")["Body"].read())
    assert dst[b"info"][b"pieces"] == lt.bdecode(src_torrent)[b"info"][b"pieces"]
    assert b"private" not in dst[b"info"]
    got = lt_download(tmp_path, webseed_only(dst), name="copy")
    assert sha((got / "model.bin").read_bytes()) == sha(data)
    # Anonymous reads follow the copy's ACL, not the source's.
    with urllib.request.urlopen(f"{gateway.url}/{bucket}/dst/model.bin") as r:
        assert r.read() == data
    assert status_of(f"{gateway.url}/{bucket}/src/model.bin") == 403


def test_large_puts_take_the_backends_etag_and_keep_their_records(backend, gateway, tmp_path):
    """From 8 MiB on (and for every part) the gateway leaves MD5 to the backend: the ETag is
    still the MD5 of the bytes (the backend's), Content-MD5 is still checked, and the object's
    ACL and piece hashes are in place when the PUT answers."""
    c = make_client(gateway)
    bucket = fresh_bucket(c)
    for size in (8 << 20, (8 << 20) + 12345):
        data = os.urandom(size)
        key = f"large-{size}.bin"
        put = c.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
        assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        # Public at once (its ACL record was written before the PUT answered).
        with urllib.request.urlopen(f"{gateway.url}/{bucket}/{key}") as r:
            assert sha(r.read()) == sha(data)
        head = c.head_object(Bucket=bucket, Key=key)
        assert head["ETag"] == put["ETag"]
        # The torrent comes from the hashes made during the PUT (no second read: same hashes
        # as libtorrent's).
        got = c.get_object_torrent(Bucket=bucket, Key=key)["Body"].read()
        piece_length = lt.bdecode(got)[b"info"][b"piece length"]
        ref = reference_hashes(tmp_path, key, data, piece_length, "v1")
        assert str(info_hashes(got).v1) == str(ref.v1)
    # A wrong Content-MD5 is refused, and nothing is stored.
    data = os.urandom(9 << 20)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket=bucket, Key="bad-md5.bin", Body=data, ContentMD5=bad)
    assert e.value.response["Error"]["Code"] == "BadDigest"
    assert status_of(f"{gateway.url}/{bucket}/bad-md5.bin") in (403, 404)
    assert c.list_objects_v2(Bucket=bucket, Prefix="bad-md5").get("KeyCount") == 0

