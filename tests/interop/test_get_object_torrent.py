"""GetObjectTorrent end to end: aws-cli and boto3 fetch it, libtorrent agrees on the
info-hashes for the same bytes, aria2c downloads the object from the webseed alone, and every
rule of the call answers with S3's status and code (XML, or the JSON envelope)."""
import datetime
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import libtorrent as lt
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from conftest import TORRENT_MAX, make_client

FLAGS = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}


def torrent_of(s3, bucket, key, fmt=None, accept=None):
    """GetObjectTorrent through boto3, with `format=` added to the signed query if given."""
    def add(request, **_):
        if fmt:
            request.url += f"&format={fmt}"
        if accept:
            request.headers["Accept"] = accept
    s3.meta.events.register("before-sign.s3.GetObjectTorrent", add)
    try:
        return s3.get_object_torrent(Bucket=bucket, Key=key)
    finally:
        s3.meta.events.unregister("before-sign.s3.GetObjectTorrent", add)


def reference_hashes(tmp_path, name, data, piece_length, fmt, private=False):
    d = tmp_path / "ref"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    fs = lt.file_storage()
    fs.add_file(name, len(data))
    t = lt.create_torrent(fs, piece_length, flags=FLAGS[fmt])
    t.set_priv(private)
    lt.set_piece_hashes(t, str(d))
    return lt.torrent_info(lt.bencode(t.generate())).info_hashes()


@pytest.mark.parametrize("size", [1, 16384, 16385, 100_000, 2_500_000])
@pytest.mark.parametrize("fmt", ["v1", "hybrid", "v2"])
def test_info_hashes_match_libtorrent(s3, bucket, tmp_path, size, fmt):
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=f"dir/obj-{size}.bin", Body=data)
    r = torrent_of(s3, bucket, f"dir/obj-{size}.bin", fmt)
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-bittorrent"
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-disposition"] == f'attachment; filename="obj-{size}.bin.torrent"'
    body = r["Body"].read()
    ti = lt.torrent_info(lt.bdecode(body))
    # (libtorrent pads v2 files to a piece internally, so ask for the file's own size.)
    assert ti.name() == f"obj-{size}.bin" and ti.files().file_size(0) == size
    assert ti.priv()  # owner-only objects give private torrents
    ref = reference_hashes(tmp_path, f"obj-{size}.bin", data, ti.piece_length(), fmt, private=True)
    got = ti.info_hashes()
    if fmt != "v2":
        assert str(got.v1) == str(ref.v1)
    if fmt != "v1":
        assert str(got.v2) == str(ref.v2)
    assert got.has_v1() == (fmt != "v2") and got.has_v2() == (fmt != "v1")
    assert ti.priv()  # owner-only objects give private torrents
    # The info dictionary is stable: asking again gives the same info-hashes.
    again = lt.torrent_info(lt.bdecode(torrent_of(s3, bucket, f"dir/obj-{size}.bin", fmt)["Body"].read()))
    assert str(again.info_hashes().v1) == str(got.v1) and str(again.info_hashes().v2) == str(got.v2)


def test_default_is_v1_and_aws_cli_fetches_it(s3, bucket, aws, tmp_path):
    s3.put_object(Bucket=bucket, Key="cli.bin", Body=b"z" * 50_000)
    out = tmp_path / "cli.torrent"
    aws("s3api", "get-object-torrent", "--bucket", bucket, "--key", "cli.bin", str(out))
    ti = lt.torrent_info(str(out))
    assert ti.info_hashes().has_v1() and not ti.info_hashes().has_v2()
    show = subprocess.run([os.environ.get("SEEDBUCKET_BIN", "target/release/seedbucket"), "torrent", "show", str(out)],
                          capture_output=True, text=True, check=True).stdout
    assert "format:        v1" in show and "webseed:" in show and "/announce?sb_token=" in show


def test_multipart_object_gives_the_same_torrent_as_a_single_put(s3, bucket):
    parts = [os.urandom(5 << 20), os.urandom(5 << 20 | 12345), os.urandom(3333)]
    whole = b"".join(parts)
    up = s3.create_multipart_upload(Bucket=bucket, Key="a/same.bin")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="a/same.bin", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
             for n, p in enumerate(parts)]
    s3.complete_multipart_upload(Bucket=bucket, Key="a/same.bin", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    s3.put_object(Bucket=bucket, Key="b/same.bin", Body=whole)
    for fmt in ["v1", "hybrid", "v2"]:
        a = lt.torrent_info(lt.bdecode(torrent_of(s3, bucket, "a/same.bin", fmt)["Body"].read())).info_hashes()
        b = lt.torrent_info(lt.bdecode(torrent_of(s3, bucket, "b/same.bin", fmt)["Body"].read())).info_hashes()
        assert str(a.v1) == str(b.v1) and str(a.v2) == str(b.v2)


def test_multipart_object_is_hashed_right_after_completion(s3, bucket):
    """Completed multipart objects are hashed in the background, not on their first ?torrent:
    the torrent metadata's `created_at` is from just after completion, before the request."""
    parts = [os.urandom(5 << 20), os.urandom(1 << 20)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="bg/model.bin")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="bg/model.bin", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
             for n, p in enumerate(parts)]
    s3.complete_multipart_upload(Bucket=bucket, Key="bg/model.bin", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    completed = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(3)
    env = json.loads(torrent_of(s3, bucket, "bg/model.bin", accept="application/json")["Body"].read())
    made = datetime.datetime.fromisoformat(env["data"]["created_at"].replace("Z", "+00:00"))
    assert made - completed < datetime.timedelta(seconds=2), (made, completed)
    # And the hashes are those of the bytes.
    body = torrent_of(s3, bucket, "bg/model.bin")["Body"].read()
    pieces = lt.bdecode(body)[b"info"][b"pieces"]
    plen = lt.bdecode(body)[b"info"][b"piece length"]
    data = b"".join(parts)
    assert pieces == b"".join(hashlib.sha1(data[i:i + plen]).digest() for i in range(0, len(data), plen))


def test_json_envelope(s3, bucket):
    s3.put_object(Bucket=bucket, Key="j/model.bin", Body=b"m" * 70_000)
    r = torrent_of(s3, bucket, "j/model.bin", "hybrid", accept="application/json")
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/json"
    env = json.loads(r["Body"].read())
    assert env["success"] is True
    d = env["data"]
    assert len(d["id"]) == 40 and d["id"] == d["info_hash_v1"]
    assert d["created_at"].endswith("Z") or "+00:00" in d["created_at"]
    assert d["bucket"] == bucket and d["key"] == "j/model.bin" and d["name"] == "model.bin"
    assert d["length"] == 70_000 and d["piece_length"] == 16384 and d["format"] == "hybrid"
    assert len(d["info_hash_v2"]) == 64
    m = d["magnet"]
    assert m.startswith(f"magnet:?xt=urn:btih:{d['info_hash_v1']}&xt=urn:btmh:1220{d['info_hash_v2']}&dn=model.bin&xl=70000&tr=")
    assert "&ws=" in m
    parsed = lt.parse_magnet_uri(m)
    assert str(parsed.info_hashes.v1) == d["info_hash_v1"]


def expect_error(status, code, fn):
    with pytest.raises(ClientError) as e:
        fn()
    got = (e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"])
    assert got == (status, code), got
    return e.value


def test_rules_of_the_call(server, s3, bucket):
    expect_error(404, "NoSuchKey", lambda: torrent_of(s3, bucket, "missing"))
    expect_error(404, "NoSuchBucket", lambda: torrent_of(s3, "no-such-bucket-x", "k"))
    s3.put_object(Bucket=bucket, Key="big", Body=b"\0" * (TORRENT_MAX + 1))
    e = expect_error(400, "InvalidRequest", lambda: torrent_of(s3, bucket, "big"))
    assert e.response["Error"]["Message"] == f"Torrent creation is not supported for objects larger than {TORRENT_MAX}"
    s3.put_object(Bucket=bucket, Key="ok", Body=b"fine")
    owner = s3.list_buckets()["Owner"]["ID"]
    assert s3.get_object_torrent(Bucket=bucket, Key="ok", ExpectedBucketOwner=owner)["Body"].read()
    expect_error(403, "AccessDenied", lambda: s3.get_object_torrent(Bucket=bucket, Key="ok", ExpectedBucketOwner="999988887777"))
    anon = make_client(server, signature_version=UNSIGNED)
    expect_error(403, "AccessDenied", lambda: anon.get_object_torrent(Bucket=bucket, Key="ok"))
    ak, sk, _ = server.create_key("torrent-other")
    other = make_client(server, ak, sk)
    expect_error(403, "AccessDenied", lambda: other.get_object_torrent(Bucket=bucket, Key="ok"))
    expect_error(400, "InvalidArgument", lambda: torrent_of(s3, bucket, "ok", "v3"))
    r = s3.get_object_torrent(Bucket=bucket, Key="ok", RequestPayer="requester")
    assert r["RequestCharged"] == "requester"


def signed(s3, method, bucket, key, query, headers=None, body=b""):
    """A raw SigV4 request through botocore's signer (for calls no SDK method makes)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    url = f"{s3.meta.endpoint_url}/{bucket}/{key}?{query}"
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    S3SigV4Auth(s3._request_signer._credentials, "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=body or None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def test_writes_and_json_errors(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"original")
    for method in ["PUT", "DELETE", "POST"]:
        status, body, _ = signed(s3, method, bucket, "keep", "torrent", body=b"overwrite?" if method != "DELETE" else b"")
        assert status == 405 and b"<Code>MethodNotAllowed</Code>" in body, (method, status, body)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"original"
    status, body, headers = signed(s3, "GET", bucket, "nothing-here", "torrent", {"Accept": "application/json"})
    assert status == 404 and headers["Content-Type"] == "application/json"
    # The envelope's message is S3's sentence for the code, as in the XML form.
    assert json.loads(body) == {"success": False, "error": {"code": "NoSuchKey",
                                                            "message": "The specified key does not exist."}}
    status, body, _ = signed(s3, "GET", bucket, "keep", "torrent&format=v9", {"Accept": "application/json"})
    assert status == 400 and json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
    status, body, _ = signed(s3, "GET", bucket, "keep", "torrent&versionId=abc")
    assert status == 400 and b"InvalidArgument" in body


ARIA = ["--seed-time=0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--file-allocation=none", "--summary-interval=0",
        "--console-log-level=error", "--bt-stop-timeout=60"]


def test_aria2c_downloads_from_the_webseed_alone(s3, bucket, tmp_path):
    data = os.urandom(3_000_000 + 777)
    s3.put_object(Bucket=bucket, Key="dl/payload.bin", Body=data)
    torrent = tmp_path / "payload.torrent"
    torrent.write_bytes(torrent_of(s3, bucket, "dl/payload.bin")["Body"].read())
    out = tmp_path / "out"
    p = subprocess.run(["aria2c", "-d", str(out), f"--listen-port={_port()}", *ARIA, str(torrent)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    got = (out / "payload.bin").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def _port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webseed_url(s3, bucket, key, fmt="v1"):
    body = torrent_of(s3, bucket, key, fmt)["Body"].read()
    return lt.torrent_info(lt.bdecode(body)).web_seeds()[0]["url"]


def test_webseed_ranges_and_version_pinning(s3, bucket):
    data = bytes(range(256)) * 1000
    s3.put_object(Bucket=bucket, Key="ws/file.bin", Body=data)
    url = webseed_url(s3, bucket, "ws/file.bin")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=1000-1999"})) as r:
        assert r.status == 206 and r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        assert r.read() == data[1000:2000]
    with urllib.request.urlopen(url) as r:
        assert r.status == 200 and r.read() == data
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"}))
    assert e.value.code == 416
    forged = url.replace("/_seedbucket/webseed/", "/_seedbucket/webseed/").rsplit("/", 2)
    bad = f"{forged[0]}/9999999999.SBFAKE.00000000000000000000000000000000/{forged[2]}"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad)
    # Answered as an unknown info-hash (issue 14): a forged token learns nothing.
    assert e.value.code == 404
    # The object changes: the old torrent's webseed never serves the new bytes.
    s3.put_object(Bucket=bucket, Key="ws/file.bin", Body=b"new content")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 410
    # v2-only torrents get a base URL; libtorrent appends the name.
    v2 = webseed_url(s3, bucket, "ws/file.bin", "v2")
    assert v2.endswith("/")
    with urllib.request.urlopen(v2 + "file.bin") as r:
        assert r.read() == b"new content"


def test_transmission_show_reads_the_v1_file(s3, bucket, tmp_path):
    """transmission-show (strict on canonical integers; it refuses v2 and hybrid) reads our v1."""
    data = os.urandom(200_000)
    s3.put_object(Bucket=bucket, Key="tr/show.bin", Body=data)
    path = tmp_path / "show.torrent"
    path.write_bytes(torrent_of(s3, bucket, "tr/show.bin", "v1")["Body"].read())
    p = subprocess.run(["transmission-show", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    ih = str(lt.torrent_info(str(path)).info_hashes().v1)
    assert ih in p.stdout.lower() and "show.bin" in p.stdout and "Private" in p.stdout


def test_presigned_torrent_url(s3, bucket):
    s3.put_object(Bucket=bucket, Key="pre/t.bin", Body=b"p" * 40_000)
    url = s3.generate_presigned_url("get_object_torrent", Params={"Bucket": bucket, "Key": "pre/t.bin"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as r:
        assert r.headers["Content-Type"] == "application/x-bittorrent"
        ti = lt.torrent_info(lt.bdecode(r.read()))
    assert ti.name() == "t.bin" and ti.total_size() == 40_000


@pytest.mark.parametrize("size", [1, 16384, 1_000_000])
def test_imdl_verifies_v1_torrent_against_the_bytes(s3, bucket, tmp_path, size):
    """imdl is strict on bencode (sorted keys, canonical integers) and checks every piece."""
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="imdl/check.bin", Body=data)
    path = tmp_path / "check.torrent"
    path.write_bytes(torrent_of(s3, bucket, "imdl/check.bin", "v1")["Body"].read())
    content = tmp_path / "check.bin"
    content.write_bytes(data)
    p = subprocess.run(["imdl", "--color", "never", "torrent", "verify", "-i", str(path), "-c", str(content)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    content.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    p = subprocess.run(["imdl", "--color", "never", "torrent", "verify", "-i", str(path), "-c", str(content)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, "a flipped byte must fail verification"
