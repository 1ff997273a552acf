"""The access log (`--access-log FILE`, text or `--log-format json`): one line per request on the
S3 port (S3 calls, ?torrent, the webseed, HTTP announces) and per UDP tracker datagram, with the
client, the access key id, the operation, the target, the status, bytes and duration; never a
secret or a signature."""

import json
import os
import time
import urllib.error
import urllib.request

import libtorrent as lt
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, Server, make_client
from test_get_object_torrent import torrent_of
from test_tracker import announce, udp_announce, udp_connect


def lines_of(path, want, timeout=10):
    """The log's lines once it has at least `want` (the writer thread flushes soon after)."""
    deadline = time.time() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.05)


def traffic(server):
    """A known set of requests: returns (count on the S3 port, UDP datagrams, presigned URL)."""
    s3 = make_client(server)
    s3.create_bucket(Bucket="logged")                                     # 1
    s3.put_object(Bucket="logged", Key="dir/a b.bin", Body=os.urandom(40_000),
                  ACL="public-read")                                      # 2
    s3.get_object(Bucket="logged", Key="dir/a b.bin")["Body"].read()      # 3
    meta = lt.bdecode(torrent_of(s3, "logged", "dir/a b.bin")["Body"].read())  # 4
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{server.url}/logged/missing", timeout=10)  # 5 (anonymous, 403)
    presigned = make_client(server, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "logged", "Key": "dir/a b.bin"}, ExpiresIn=300)
    urllib.request.urlopen(presigned, timeout=10).read()                  # 6
    webseed = meta[b"url-list"]
    webseed = (webseed[0] if isinstance(webseed, list) else webseed).decode()
    req = urllib.request.Request(webseed, headers={"Range": "bytes=0-99"})
    urllib.request.urlopen(req, timeout=10).read()                        # 7
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    announce(meta[b"announce"].decode(), ih, b"L" * 20, 7001, 10)          # 8
    ann = meta[b"announce"].decode()
    url_data = ("/announce" + ("?" + ann.split("?", 1)[1] if "?" in ann else "")).encode()
    cid = udp_connect(server.port)
    udp_announce(server.port, cid, ih, b"M" * 20, 7002, 0, url=url_data)
    return 8, 2, presigned, ih.hex()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_line_per_request_and_no_secrets(tmp_path, fmt):
    log = tmp_path / "access.log"
    extra = ["--access-log", str(log)] + (["--log-format", "json"] if fmt == "json" else [])
    server = Server(tmp_path, extra=extra)
    try:
        http_count, udp_count, presigned, ih = traffic(server)
        # Plus one: the fixture's own health check is logged first. (Waiting for one line less
        # raced the last UDP line: the reply reaches the client before its line is written.)
        lines = lines_of(log, http_count + udp_count + 1)
    finally:
        server.stop()
    text = "\n".join(lines)
    assert SECRET_KEY not in text
    assert presigned.split("X-Amz-Signature=")[1] not in text
    assert "Signature" not in text
    assert "\x1b[" not in text, "no terminal colours in a log file"
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
    else:
        names = ["time", "channel", "remote", "key", "operation", "target", "status",
                 "bytes_out", "bytes_in", "duration_ms", "request_id"]
        entries = []
        for line in lines:
            fields = line.split(" ")
            assert len(fields) == len(names), line
            e = dict(zip(names, fields))
            if "/" in e["target"] and e["channel"] in ("s3", "webseed"):
                e["bucket"], e["object"] = e["target"].split("/", 1)
            e["bytes_out"] = int(e["bytes_out"])
            entries.append(e)
    # The test's own wait for the server's health check is a request too.
    assert entries[0]["operation"] == "health", entries[0]
    by_channel = {}
    for e in entries[1:]:
        by_channel.setdefault(e["channel"], []).append(e)
    assert len(by_channel["s3"]) == 6, by_channel["s3"]
    assert len(by_channel["webseed"]) == 1
    assert len(by_channel["tracker-http"]) == 1
    assert len(by_channel["tracker-udp"]) == 2
    ops = [e["operation"] for e in by_channel["s3"]]
    assert ops == ["CreateBucket", "PutObject", "GetObject", "GetObjectTorrent", "GetObject",
                   "GetObject"], ops
    get = by_channel["s3"][2]
    assert get["status"] == "200" and get["bytes_out"] == 40_000
    assert get["key"] == ACCESS_KEY and get["remote"].startswith("127.0.0.1:")
    obj = get["object"] if fmt == "json" else get["object"].replace("%20", " ")
    assert obj == "dir/a b.bin"
    denied = by_channel["s3"][4]
    assert denied["status"] == "403" and denied.get("key") in (None, "-")
    assert by_channel["s3"][5]["key"] == ACCESS_KEY, "presigned: the key id, not the signature"
    assert by_channel["webseed"][0]["status"] == "206" and by_channel["webseed"][0]["bytes_out"] == 100
    udp = by_channel["tracker-udp"]
    assert [e["operation"] for e in udp] == ["connect", "announce"]
    assert udp[1]["status"] == "ok"
    assert (udp[1]["info_hash"] if fmt == "json" else udp[1]["target"]) == ih


def test_peer_connections_are_logged_when_they_end(tmp_path):
    from test_seeder import aria2c_downloads, without_webseed
    log = tmp_path / "access.log"
    server = Server(tmp_path, extra=["--access-log", str(log), "--log-format", "json"])
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket="peers")
        data = os.urandom(300_000)
        s3.put_object(Bucket="peers", Key="p.bin", Body=data, ACL="public-read")
        meta = lt.bdecode(torrent_of(s3, "peers", "p.bin")["Body"].read())
        (tmp_path / "dl").mkdir()
        aria2c_downloads(tmp_path / "dl", without_webseed(meta), data)
        ih = str(lt.torrent_info(meta).info_hashes().v1)
        deadline = time.time() + 15
        peers = []
        while not peers and time.time() < deadline:
            peers = [e for e in map(json.loads, lines_of(log, 1)) if e["channel"] == "peer"]
            time.sleep(0.2)
    finally:
        server.stop()
    assert peers, "no peer connection logged"
    served = [e for e in peers if e.get("info_hash") == ih and e["bytes_out"] > 0]
    assert served, peers
    assert sum(e["bytes_out"] for e in served) == len(data)
    assert served[0]["operation"] in ("tcp", "utp") and served[0]["status"] == "closed"
    assert served[0]["remote"].startswith("127.0.0.1:")


def test_off_writes_nothing(tmp_path):
    server = Server(tmp_path, extra=["--access-log", "off"])
    try:
        make_client(server).list_buckets()
        time.sleep(0.3)
    finally:
        server.stop()
    assert "ListBuckets" not in server.logs()


def test_a_stopping_server_writes_out_waiting_lines(tmp_path):
    """Lines wait up to 100 ms for their batch; SIGTERM right after a request still logs it."""
    log = tmp_path / "access.log"
    server = Server(tmp_path, extra=["--access-log", str(log)])
    try:
        make_client(server).list_buckets()
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert "ListBuckets" in log.read_text()
