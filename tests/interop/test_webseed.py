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
