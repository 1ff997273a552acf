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
    # seedbucket's own seeder is always in the list, first, and counted as a seed.
    seeder = a[b"peers"]
    assert len(seeder) == 6 and seeder[:4] == bytes([127, 0, 0, 1])
    assert a[b"incomplete"] == 1 and a[b"complete"] == 1 and a[b"interval"] > 0
    # The truncated v2 hash of a hybrid leads to the same swarm.
    b = announce(ann, v2_short, b"B" * 20, 7002, 0, "started")
    assert b[b"peers"] == seeder + bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")
    assert (b[b"complete"], b[b"incomplete"]) == (2, 1)
    full = announce(ann, v1, b"A" * 20, 7001, 100, compact=False)
    # The server seeder's peer id: seedbucket's prefix, then 12 digits derived from its address
    # (so several nodes' seeders differ), the same in every reply.
    seeder_id = full[b"peers"][0][b"peer id"]
    assert seeder_id.startswith(b"-SB0100-") and seeder_id[8:].isdigit() and len(seeder_id) == 20
    assert full[b"peers"] == [
        {b"ip": b"127.0.0.1", b"peer id": seeder_id, b"port": int.from_bytes(seeder[4:], "big")},
        {b"ip": b"127.0.0.1", b"peer id": b"B" * 20, b"port": 7002}]
    again = announce(ann, v1, b"A" * 20, 7001, 100, compact=False)
    assert again[b"peers"][0][b"peer id"] == seeder_id
    announce(ann, v1, b"A" * 20, 7001, 0, "completed")
    scrape_url = ann.replace("/announce?", "/scrape?") + "&" + urllib.parse.urlencode({"info_hash": v1})
    with urllib.request.urlopen(scrape_url) as r:
        files = lt.bdecode(r.read())[b"files"]
    assert files[v1] == {b"complete": 3, b"downloaded": 1, b"incomplete": 0}
    announce(ann, v1, b"B" * 20, 7002, 0, "stopped")
    with urllib.request.urlopen(scrape_url) as r:
        assert lt.bdecode(r.read())[b"files"][v1][b"complete"] == 2
    # Refusals are bencoded failure reasons.
    assert "/announce?sb_token=" in ann  # the path libtorrent accepts for a tracker on a private address
    base = ann.split("/announce?")[0]
    no_token = announce(base + "/announce", v1, b"C" * 20, 7003, 1)
    # As for an unknown info-hash (issue 14): a guess does not learn that the torrent exists.
    assert b"unregistered" in no_token[b"failure reason"]
    forged = announce(base + "/announce?sb_token=SBFAKE.00000000000000000000000000000000", v1, b"C" * 20, 7003, 1)
    assert b"failure reason" in forged
    # The same tracker under /_seedbucket/tracker/<token>/announce.
    token = ann.split("sb_token=")[1]
    alt = announce(f"{base}/_seedbucket/tracker/{token}/announce", v1, b"D" * 20, 7004, 1)
    assert b"failure reason" not in alt and alt[b"incomplete"] >= 1
    # A bucket called "announce" is still an S3 bucket for S3 requests.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/announce?list-type=2")
    # (anonymous callers learn that it does not exist, as from S3)
    assert e.value.code == 404 and b"<Code>NoSuchBucket</Code>" in e.value.read()
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
                # aria2c, and seedbucket's own seeder.
                if lt.bdecode(r.read())[b"files"].get(ih, {}).get(b"complete") == 2:
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


def udp_call(port, packet):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(packet, ("127.0.0.1", port))
        return s.recv(4096)


def udp_connect(port, tid=0x1234):
    import struct
    r = udp_call(port, struct.pack(">QII", 0x41727101980, 0, tid))
    action, got_tid, cid = struct.unpack(">IIQ", r)
    assert (action, got_tid) == (0, tid)
    return cid


def udp_announce(port, cid, ih, peer_id, peer_port, left, event=2, url=b""):
    import struct
    pkt = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 77, ih, peer_id, 0, left, 0, event, 0, 0, -1, peer_port)
    for i in range(0, len(url), 255):
        chunk = url[i:i + 255]
        pkt += bytes([2, len(chunk)]) + chunk
    return udp_call(port, pkt)


def test_udp_tracker(server, s3, bucket):
    import struct
    s3.put_object(Bucket=bucket, Key="u/udp.bin", Body=os.urandom(30_000))
    meta = lt.bdecode(torrent_of(s3, bucket, "u/udp.bin")["Body"].read())
    ann = meta[b"announce"].decode()
    url_data = ("/announce?" + ann.split("?", 1)[1]).encode()
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    port = server.port
    cid = udp_connect(port)
    r = udp_announce(port, cid, ih, b"U" * 20, 9001, 10, url=url_data)
    assert struct.unpack(">I", r[:4])[0] == 1, r
    r = udp_announce(port, cid, ih, b"V" * 20, 9002, 0, url=url_data)
    action, tid, interval, leechers, seeders = struct.unpack(">IIIII", r[:20])
    # The other peer, after seedbucket's own seeder (a seed too).
    assert (action, tid, leechers, seeders) == (1, 77, 1, 2) and interval > 0
    assert len(r) == 32 and r[20:24] == bytes([127, 0, 0, 1])
    assert r[26:] == bytes([127, 0, 0, 1]) + (9001).to_bytes(2, "big")
    # Refusals are error packets (action 3) with a message.
    for bad in [udp_announce(port, cid ^ 1, ih, b"W" * 20, 9003, 5, url=url_data),
                udp_announce(port, cid, ih, b"W" * 20, 9003, 5),
                udp_announce(port, cid, b"\x05" * 20, b"W" * 20, 9003, 5, url=url_data),
                udp_call(port, struct.pack(">QII", 1, 9, 5))]:
        assert struct.unpack(">I", bad[:4])[0] == 3 and len(bad) > 8, bad


def test_libtorrent_uses_the_udp_tracker(server, s3, bucket, tmp_path):
    """libtorrent announces over UDP (BEP 15 + BEP 41 token) and finds a peer that announced over HTTP."""
    data = os.urandom(1_000_000)
    s3.put_object(Bucket=bucket, Key="u/lt.bin", Body=data)
    meta = lt.bdecode(torrent_of(s3, bucket, "u/lt.bin")["Body"].read())
    ann = meta[b"announce"].decode()
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    # A fake seeder announced over HTTP, so the UDP announce has someone to find.
    announce(ann, ih, b"S" * 20, 9100, 0, "started")
    udp_url = f"udp://127.0.0.1:{server.port}/announce?" + ann.split("?", 1)[1]
    meta[b"announce"] = udp_url.encode()
    meta[b"announce-list"] = [[udp_url.encode()]]
    del meta[b"url-list"]
    ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                      "enable_upnp": False, "enable_natpmp": False,
                      "alert_mask": lt.alert.category_t.tracker_notification | lt.alert.category_t.error_notification})
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(meta)
    atp.save_path = str(tmp_path / "udp-leech")
    h = ses.add_torrent(atp)
    replies = []
    deadline = time.time() + 20
    while time.time() < deadline and not replies:
        for a in ses.pop_alerts():
            if a.what() == "tracker_reply":
                replies.append(a.message())
            elif a.what() == "tracker_error":
                raise AssertionError(a.message())
        time.sleep(0.1)
    # The HTTP-announced peer and seedbucket's seeder.
    assert replies and replies[0].endswith("received peers: 2"), replies
    ses.remove_torrent(h)


def test_rate_limit_per_address(s3, bucket):
    """The default limit (50 announces/s per address, bursts of 100) answers a failure reason."""
    s3.put_object(Bucket=bucket, Key="rl/r.bin", Body=b"r" * 1000)
    meta = lt.bdecode(torrent_of(s3, bucket, "rl/r.bin")["Body"].read())
    ann = meta[b"announce"].decode()
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    reasons = [announce(ann, ih, b"R" * 20, 7100, 1).get(b"failure reason", b"") for _ in range(300)]
    limited = [i for i, r in enumerate(reasons) if r.startswith(b"rate limited")]
    assert limited, "300 announces in a row were never limited"
    assert limited[0] >= 90, "the burst allows about 100 at once"
    assert not [r for r in reasons if r and not r.startswith(b"rate limited")]
    time.sleep(2.5)  # refill, for whatever runs next
    assert b"failure reason" not in announce(ann, ih, b"R" * 20, 7100, 1)


def test_open_tracker_flag(tmp_path):
    """With --open-tracker any info-hash is tracked; without it, only issued ones."""
    from conftest import ACCESS_KEY, SECRET_KEY, _binary
    port = free_port()
    env = dict(os.environ, SEEDBUCKET_ROOT_ACCESS_KEY=ACCESS_KEY, SEEDBUCKET_ROOT_SECRET_KEY=SECRET_KEY)
    p = subprocess.Popen([_binary(), "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}",
                          "--open-tracker", "--peer-listen", "127.0.0.1:0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/announce"
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_seedbucket/health")
                break
            except OSError:
                time.sleep(0.05)
        announce(url, b"\x07" * 20, b"X" * 20, 7200, 5, "started")
        r = announce(url, b"\x07" * 20, b"Y" * 20, 7201, 5, "started")
        assert b"failure reason" not in r and len(r[b"peers"]) == 6
    finally:
        p.terminate()
        p.wait(10)


def test_aria2c_uses_the_udp_tracker(server, s3, bucket, tmp_path):
    """aria2c announces over UDP (an open torrent: aria2c sends no BEP 41 URL data, so no token),
    finds seedbucket's seeder there and downloads. aria2c speaks UDP trackers only through its
    DHT socket, so DHT is on here (with no nodes to bootstrap from, on loopback)."""
    import struct
    data = os.urandom(700_000)
    s3.put_object(Bucket=bucket, Key="u/aria-udp.bin", Body=data, ACL="public-read")
    meta = lt.bdecode(torrent_of(s3, bucket, "u/aria-udp.bin")["Body"].read())
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    udp_url = f"udp://127.0.0.1:{server.port}/announce".encode()
    meta[b"announce"] = udp_url
    meta[b"announce-list"] = [[udp_url]]
    del meta[b"url-list"]
    tfile = tmp_path / "udp.torrent"
    tfile.write_bytes(lt.bencode(meta))
    args = [a for a in ARIA if not a.startswith("--enable-dht=")]
    p = subprocess.run(["aria2c", "-d", str(tmp_path / "out"), f"--listen-port={free_port()}", "--enable-dht=true",
                        f"--dht-listen-port={free_port()}", f"--dht-file-path={tmp_path / 'dht.dat'}", *args, str(tfile)],
                       capture_output=True, text=True, timeout=120)
    got = tmp_path / "out" / "aria-udp.bin"
    assert got.exists(), p.stdout[-2000:]
    assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(data).digest()
    cid = udp_connect(server.port)
    r = udp_call(server.port, struct.pack(">QII", cid, 2, 99) + ih)
    action, tid, seeders, completed, leechers = struct.unpack(">IIIII", r)
    # aria2c stops without a `completed` event; our seeder is always counted.
    assert (action, tid) == (2, 99) and seeders >= 1 and leechers == 0, (seeders, completed, leechers)


def test_metrics_count_announces():
    """The admin listener's /metrics counts tracker traffic (a server of its own, with --admin-listen)."""
    from conftest import Server, make_client
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), admin=True)
        try:
            c = make_client(srv)
            c.create_bucket(Bucket="metrics")
            c.put_object(Bucket="metrics", Key="k", Body=b"x" * 1000, ACL="public-read")
            meta = lt.bdecode(torrent_of(c, "metrics", "k")["Body"].read())
            ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
            before = srv.metrics()
            announce(meta[b"announce"].decode(), ih, b"M" * 20, 7100, 10, "started")
            after = srv.metrics()
            key = 'seedbucket_tracker_announces_total{transport="http"}'
            assert after[key] == before[key] + 1
            assert after["seedbucket_tracker_peers"] >= 1 and after["seedbucket_tracker_torrents"] >= 1
        finally:
            srv.stop()
