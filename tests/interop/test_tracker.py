"""The built-in HTTP tracker with real clients: aria2c seeds an object it was given, libtorrent
finds it through our tracker alone (webseed removed) and downloads over the peer wire; plus the
protocol's refusals, in bencode."""
import hashlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest

from test_get_object_torrent import ARIA, torrent_of


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def announce(url, info_hash: bytes, peer_id: bytes, port: int, left: int, event=None, compact=True):
    q = {"info_hash": info_hash, "peer_id": peer_id, "port": port, "uploaded": 0, "downloaded": 0, "left": left}
    if event:
        q["event"] = event
    if not compact:
        q["compact"] = 0
    sep = "&" if "?" in url else "?"
    with urllib.request.urlopen(url + sep + urllib.parse.urlencode(q)) as r:
        assert r.status == 200
        return lt.bdecode(r.read())


def test_announce_scrape_and_refusals(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t/one.bin", Body=os.urandom(50_000))
    body = torrent_of(s3, bucket, "t/one.bin", "hybrid")["Body"].read()
    meta = lt.bdecode(body)
    ann = meta[b"announce"].decode()
    ti = lt.torrent_info(meta)
    v1 = bytes.fromhex(str(ti.info_hashes().v1))
    v2_short = bytes.fromhex(str(ti.info_hashes().v2))[:20]
    a = announce(ann, v1, b"A" * 20, 7001, 100, "started")
    assert a[b"peers"] == b"" and a[b"incomplete"] == 1 and a[b"interval"] > 0
    # The truncated v2 hash of a hybrid leads to the same swarm.
    b = announce(ann, v2_short, b"B" * 20, 7002, 0, "started")
    assert b[b"peers"] == bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")
    assert (b[b"complete"], b[b"incomplete"]) == (1, 1)
    full = announce(ann, v1, b"A" * 20, 7001, 100, compact=False)
    assert full[b"peers"] == [{b"ip": b"127.0.0.1", b"peer id": b"B" * 20, b"port": 7002}]
    announce(ann, v1, b"A" * 20, 7001, 0, "completed")
    scrape_url = ann.replace("/announce?", "/scrape?") + "&" + urllib.parse.urlencode({"info_hash": v1})
    with urllib.request.urlopen(scrape_url) as r:
        files = lt.bdecode(r.read())[b"files"]
    assert files[v1] == {b"complete": 2, b"downloaded": 1, b"incomplete": 0}
    announce(ann, v1, b"B" * 20, 7002, 0, "stopped")
    with urllib.request.urlopen(scrape_url) as r:
        assert lt.bdecode(r.read())[b"files"][v1][b"complete"] == 1
    # Refusals are bencoded failure reasons.
    assert "/announce?sb_token=" in ann  # the path libtorrent accepts for a tracker on a private address
    base = ann.split("/announce?")[0]
    no_token = announce(base + "/announce", v1, b"C" * 20, 7003, 1)
    assert b"private" in no_token[b"failure reason"]
    forged = announce(base + "/announce?sb_token=SBFAKE.00000000000000000000000000000000", v1, b"C" * 20, 7003, 1)
    assert b"failure reason" in forged
    # The same tracker under /_seedbucket/tracker/<token>/announce.
    token = ann.split("sb_token=")[1]
    alt = announce(f"{base}/_seedbucket/tracker/{token}/announce", v1, b"D" * 20, 7004, 1)
    assert b"failure reason" not in alt and alt[b"incomplete"] >= 1
    # A bucket called "announce" is still an S3 bucket for S3 requests.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/announce?list-type=2")
    assert e.value.code == 403
    unknown = announce(ann, b"\x01" * 20, b"C" * 20, 7003, 1)
    assert b"unregistered" in unknown[b"failure reason"]
    with urllib.request.urlopen(ann + "&info_hash=%01%02&peer_id=x&port=1&left=0") as r:
        assert b"failure reason" in lt.bdecode(r.read())


def test_libtorrent_finds_aria2c_through_the_tracker(s3, bucket, tmp_path):
    data = os.urandom(4_000_000)
    s3.put_object(Bucket=bucket, Key="swarm/shared.bin", Body=data)
    meta = lt.bdecode(torrent_of(s3, bucket, "swarm/shared.bin")["Body"].read())
    with_webseed = tmp_path / "with.torrent"
    with_webseed.write_bytes(lt.bencode(meta))
    # The seeder: aria2c with the bytes already in place.
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    (seed_dir / "shared.bin").write_bytes(data)
    seed_port = free_port()
    seeder = subprocess.Popen(["aria2c", "-d", str(seed_dir), f"--listen-port={seed_port}", "--bt-seed-unverified=true",
                               "--seed-ratio=0.0", "--seed-time=5", *[a for a in ARIA if not a.startswith("--seed-time")],
                               str(with_webseed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
        scrape = meta[b"announce"].decode().replace("/announce?", "/scrape?") + "&" + urllib.parse.urlencode({"info_hash": ih})
        deadline = time.time() + 30
        while time.time() < deadline:
            with urllib.request.urlopen(scrape) as r:
                if lt.bdecode(r.read())[b"files"].get(ih, {}).get(b"complete") == 1:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("aria2c never announced itself as a seeder")
        # The leecher: libtorrent, with the webseed removed, so the bytes can only come from aria2c.
        del meta[b"url-list"]
        ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                          "enable_upnp": False, "enable_natpmp": False, "allow_multiple_connections_per_ip": True})
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(meta)
        atp.save_path = str(tmp_path / "leech")
        h = ses.add_torrent(atp)
        deadline = time.time() + 60
        while time.time() < deadline and not h.status().is_seeding:
            time.sleep(0.2)
        st = h.status()
        assert st.is_seeding, f"libtorrent did not finish: state={st.state} progress={st.progress} peers={st.num_peers}"
        got = (tmp_path / "leech" / "shared.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        ses.remove_torrent(h)
    finally:
        seeder.terminate()
        seeder.wait(10)
