"""The webseed (BEP 19) alone, with each client's own style of requests: libtorrent (every form,
v2-only appending the name to a base URL), transmission-cli (per-piece ranges, needs 206) and
aria2c (in test_get_object_torrent). Torrents here have no tracker, so no peer can help."""
import hashlib
import json
import os
import socket
import subprocess
import time

import libtorrent as lt
import pytest

from conftest import run_transmission
from test_get_object_torrent import torrent_of
from test_seeder import lt_download


def sha(b):
    return hashlib.sha256(b).hexdigest()


def webseed_only(meta):
    meta = dict(meta)
    meta.pop(b"announce", None)
    meta.pop(b"announce-list", None)
    return meta


@pytest.mark.parametrize("fmt", ["v1", "hybrid", "v2"])
def test_libtorrent_downloads_from_the_webseed_alone(s3, bucket, tmp_path, fmt):
    data = os.urandom(2_500_000 + 99)
    s3.put_object(Bucket=bucket, Key=f"ws/{fmt}.bin", Body=data)  # private: tokens in the URL
    meta = lt.bdecode(torrent_of(s3, bucket, f"ws/{fmt}.bin", fmt)["Body"].read())
    assert meta[b"url-list"]
    out = lt_download(tmp_path, webseed_only(meta))
    assert sha((out / f"{fmt}.bin").read_bytes()) == sha(data)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transmission_downloads_from_the_webseed_alone(s3, bucket, tmp_path):
    data = os.urandom(3_000_000 + 5)
    s3.put_object(Bucket=bucket, Key="ws/transmission.bin", Body=data, ACL="public-read")
    meta = webseed_only(lt.bdecode(torrent_of(s3, bucket, "ws/transmission.bin", "v1")["Body"].read()))
    tfile = tmp_path / "t.torrent"
    tfile.write_bytes(lt.bencode(meta))
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
        "port-forwarding-enabled": False, "peer-port": _free_port(), "bind-address-ipv4": "127.0.0.1",
        "rpc-enabled": False, "ratio-limit-enabled": True, "ratio-limit": 0}))
    target = run_transmission([], cfg, tfile, tmp_path, "transmission.bin", len(data))
    assert sha(target.read_bytes()) == sha(data)


def test_webseed_rate_limit_caps_the_webseed_only(tmp_path):
    """--webseed-rate-limit caps what the webseed sends in all (a bucket of one second's worth,
    then the rate); S3 GETs of the same object are not slowed; the bytes are intact."""
    from conftest import Server, make_client
    import urllib.request

    rate = 2_000_000
    srv = Server(tmp_path, extra=["--webseed-rate-limit", str(rate)])
    try:
        s3 = make_client(srv)
        s3.create_bucket(Bucket="paced")
        data = os.urandom(6_000_000)
        s3.put_object(Bucket="paced", Key="paced.bin", Body=data, ACL="public-read")
        meta = lt.bdecode(torrent_of(s3, "paced", "paced.bin")["Body"].read())
        url = lt.torrent_info(meta).web_seeds()[0]["url"]
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as r:
            got = r.read()
        took = time.monotonic() - started
        assert sha(got) == sha(data)
        # One second's worth at once, the other 4 MB at 2 MB/s: at least 2 s.
        assert took >= 1.8, f"the webseed sent 6 MB in {took:.2f} s under a 2 MB/s limit"
        started = time.monotonic()
        with urllib.request.urlopen(f"{srv.url}/paced/paced.bin", timeout=60) as r:
            assert sha(r.read()) == sha(data)
        assert time.monotonic() - started < 1.5, "S3 GET was slowed by the webseed's limit"
    finally:
        srv.stop()
