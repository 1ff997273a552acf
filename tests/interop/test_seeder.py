"""seedbucket's own seeder with real clients: libtorrent (every form) and aria2c (v1) download
objects from the seeder alone (webseed removed), from magnet links, and from the webseed alone;
private torrents need an announce with their token first; a misbehaving peer is dropped without
hurting others; and a swarm of libtorrent leechers shares the load."""
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest

from test_get_object_torrent import ARIA, torrent_of

SESSION = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
           "enable_upnp": False, "enable_natpmp": False, "allow_multiple_connections_per_ip": True,
           "alert_mask": lt.alert.category_t.error_notification}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def wait_seeding(handles, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(h.status().is_seeding for h in handles):
            return
        time.sleep(0.1)
    states = [(str(h.status().state), h.status().progress, h.status().num_peers) for h in handles]
    raise AssertionError(f"not finished in {timeout}s: {states}")


def lt_download(tmp_path, meta=None, magnet=None, name="leech"):
    """Downloads with one libtorrent session; returns the save dir."""
    ses = lt.session(SESSION)
    atp = lt.parse_magnet_uri(magnet) if magnet else lt.add_torrent_params()
    if meta is not None:
        atp.ti = lt.torrent_info(meta)
    atp.save_path = str(tmp_path / name)
    h = ses.add_torrent(atp)
    try:
        wait_seeding([h])
    finally:
        ses.remove_torrent(h)
    return tmp_path / name


def without_webseed(meta):
    meta = dict(meta)
    meta.pop(b"url-list", None)
    return meta


@pytest.fixture
def public_object(s3, bucket):
    def make(key, size):
        data = os.urandom(size)
        s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
        return data
    return make


@pytest.mark.parametrize("fmt", ["v1", "hybrid", "v2"])
def test_libtorrent_downloads_from_the_seeder_alone(s3, bucket, public_object, tmp_path, fmt):
    data = public_object(f"seed/{fmt}.bin", 3_000_000 + 123)
    meta = lt.bdecode(torrent_of(s3, bucket, f"seed/{fmt}.bin", fmt)["Body"].read())
    out = lt_download(tmp_path, without_webseed(meta))
    assert sha((out / f"{fmt}.bin").read_bytes()) == sha(data)


def test_libtorrent_downloads_a_private_object_with_its_token(s3, bucket, tmp_path):
    data = os.urandom(1_500_000)
    s3.put_object(Bucket=bucket, Key="seed/private.bin", Body=data)
    meta = lt.bdecode(torrent_of(s3, bucket, "seed/private.bin", "hybrid")["Body"].read())
    assert meta[b"info"][b"private"] == 1
    out = lt_download(tmp_path, without_webseed(meta))
    assert sha((out / "private.bin").read_bytes()) == sha(data)


def aria2c_downloads(tmp_path, meta, data, *flags):
    """aria2c (DHT, LPD and PEX off) downloads the torrent `meta` as given into tmp_path/aria,
    with any extra `flags`; the file must arrive with the bytes of `data`."""
    tfile = tmp_path / "aria2c.torrent"
    tfile.write_bytes(lt.bencode(meta))
    p = subprocess.run(["aria2c", "-d", str(tmp_path / "aria"), *ARIA, *flags, str(tfile)],
                       capture_output=True, text=True, timeout=120)
    got = tmp_path / "aria" / meta[b"info"][b"name"].decode()
    assert got.exists(), p.stdout[-2000:]
    assert sha(got.read_bytes()) == sha(data)


def test_aria2c_downloads_from_the_seeder_alone(s3, bucket, public_object, tmp_path):
    data = public_object("seed/aria.bin", 2_000_000)
    meta = lt.bdecode(torrent_of(s3, bucket, "seed/aria.bin")["Body"].read())
    aria2c_downloads(tmp_path, without_webseed(meta), data)


def magnet_of(server, bucket, key, fmt):
    req = urllib.request.Request(f"{server.url}/{bucket}/{key}?torrent&format={fmt}",
                                 headers={"Accept": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["data"]["magnet"]


@pytest.mark.parametrize("fmt", ["v1", "hybrid"])
def test_libtorrent_resolves_a_magnet_from_the_seeder(server, public_object, bucket, tmp_path, fmt):
    data = public_object(f"magnet/{fmt}.bin", 1_200_000)
    magnet = magnet_of(server, bucket, f"magnet/{fmt}.bin", fmt)
    assert "xt=urn:btih:" in magnet and "tr=" in magnet and "ws=" in magnet
    # Without the webseed, the metadata (BEP 9) and the bytes can only come from the seeder.
    no_ws = "&".join(p for p in magnet.split("&") if not p.startswith("ws="))
    out = lt_download(tmp_path, magnet=no_ws)
    assert sha((out / f"{fmt}.bin").read_bytes()) == sha(data)


def test_aria2c_resolves_a_magnet(server, public_object, bucket, tmp_path):
    data = public_object("magnet/aria.bin", 900_000)
    magnet = magnet_of(server, bucket, "magnet/aria.bin", "v1")
    p = subprocess.run(["aria2c", "-d", str(tmp_path / "am"), "--bt-save-metadata=false", *ARIA, magnet],
                       capture_output=True, text=True, timeout=120)
    got = tmp_path / "am" / "aria.bin"
    assert got.exists(), p.stdout[-2000:]
    assert sha(got.read_bytes()) == sha(data)


def seeder_port(meta):
    """The seeder's port, from the first peer our tracker lists."""
    ann = meta[b"announce"].decode()
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    q = urllib.parse.urlencode({"info_hash": ih, "peer_id": b"P" * 20, "port": 1, "uploaded": 0,
                                "downloaded": 0, "left": 0, "event": "stopped"})
    with urllib.request.urlopen(ann + ("&" if "?" in ann else "?") + q) as r:
        peers = lt.bdecode(r.read())[b"peers"]
    return int.from_bytes(peers[4:6], "big"), ih


def handshake(port, ih, tail=b""):
    """Sends a BitTorrent handshake; returns the reply bytes (empty if the seeder hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x13BitTorrent protocol" + bytes(8) + ih + b"-XX0001-" + b"x" * 12 + tail)
        try:
            return s.recv(68)
        except (ConnectionResetError, socket.timeout):
            return b""


def test_private_object_needs_an_announce_with_its_token(s3, bucket):
    s3.put_object(Bucket=bucket, Key="seed/guarded.bin", Body=os.urandom(200_000))
    meta = lt.bdecode(torrent_of(s3, bucket, "seed/guarded.bin", "v1")["Body"].read())
    ann = meta[b"announce"].decode()
    # Learn the seeder's port through an open torrent (this announce carries no token for ours).
    s3.put_object(Bucket=bucket, Key="seed/open.bin", Body=b"o" * 1000, ACL="public-read")
    port, _ = seeder_port(lt.bdecode(torrent_of(s3, bucket, "seed/open.bin")["Body"].read()))
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    assert handshake(port, ih) == b"", "the seeder served a private torrent to an address with no token"
    # An announce without the token is refused and admits nobody.
    base = ann.split("?")[0]
    q = urllib.parse.urlencode({"info_hash": ih, "peer_id": b"Q" * 20, "port": 7777, "uploaded": 0,
                                "downloaded": 0, "left": 100})
    with urllib.request.urlopen(base + "?" + q) as r:
        assert b"failure reason" in r.read()
    assert handshake(port, ih) == b""
    with urllib.request.urlopen(ann + "&" + q) as r:
        assert b"failure reason" not in r.read()
    reply = handshake(port, ih)
    assert len(reply) == 68 and reply[28:48] == ih
    # Unknown info-hashes are never served.
    assert handshake(port, os.urandom(20)) == b""


def test_a_malformed_peer_is_dropped_and_others_finish(s3, bucket, public_object, tmp_path):
    data = public_object("seed/robust.bin", 2_000_000)
    meta = lt.bdecode(torrent_of(s3, bucket, "seed/robust.bin")["Body"].read())
    port, ih = seeder_port(meta)
    # Garbage instead of a handshake, an oversized length prefix, a request outside the file.
    # Garbage could be the start of an encrypted handshake, so the seeder answers with its
    # public key, then closes once the bytes cannot be one (no synchronisation point within
    # the 512-byte padding limit).
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 700)
        received = b""
        while chunk := s.recv(4096):
            received += chunk
        assert len(received) <= 96 + 512, "at most a public key and its padding"
    for frame in [(0x7FFFFFFF).to_bytes(4, "big") + b"\x07",
                  (13).to_bytes(4, "big") + b"\x06" + (10**6).to_bytes(4, "big") + bytes(4) + (16384).to_bytes(4, "big")]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x13BitTorrent protocol" + bytes(8) + ih + b"-XX0001-" + b"y" * 12)
            s.recv(68)
            s.sendall(frame)
            deadline = time.time() + 5
            closed = False
            while time.time() < deadline:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
            assert closed, f"the seeder kept a peer that sent {frame[:8]!r}"
    out = lt_download(tmp_path, without_webseed(meta))
    assert sha((out / "robust.bin").read_bytes()) == sha(data)


def test_swarm_shares_the_load(tmp_path):
    """8 libtorrent leechers, the seeder capped: the server uploads far less than 8 copies."""
    from conftest import Server, make_client
    size = 8 * 1024 * 1024
    srv = Server(tmp_path, extra=["--seed-rate-limit", str(2 * 1024 * 1024)], admin=True)
    try:
        s3 = make_client(srv)
        s3.create_bucket(Bucket="swarm")
        data = os.urandom(size)
        s3.put_object(Bucket="swarm", Key="big.bin", Body=data, ACL="public-read")
        meta = without_webseed(lt.bdecode(torrent_of(s3, "swarm", "big.bin")["Body"].read()))
        sessions, handles = [], []
        for i in range(8):
            ses = lt.session(SESSION)
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(meta)
            atp.save_path = str(tmp_path / f"leech{i}")
            handles.append(ses.add_torrent(atp))
            sessions.append(ses)
        wait_seeding(handles, timeout=180)
        for i in range(8):
            assert sha((tmp_path / f"leech{i}" / "big.bin").read_bytes()) == sha(data)
        uploaded = srv.uploaded_bytes()
        ratio = uploaded / size
        print(f"swarm: server uploaded {uploaded} bytes = {ratio:.2f}x the object for 8 leechers")
        assert ratio < 2.5, f"the server uploaded {ratio:.2f}x the object"
    finally:
        srv.stop()


def test_hybrid_swarm_joined_by_v1_and_v2_hashes(server, s3, bucket, public_object, tmp_path):
    """One hybrid torrent, three clients at once: one joins by the v1 info-hash alone (a btih
    magnet), one by the v2 info-hash alone (a btmh magnet), one from the .torrent. The seeder
    and the tracker see one swarm under both hashes; all three finish with the right bytes.
    (aria2c 1.36, the v1-only client at hand, mis-reads hybrid metadata: it "completes" an empty
    file even from a btih magnet, so v1-only clients need the v1 form; see docs/torrents.md.)"""
    data = public_object("hybrid/both.bin", 3_000_000)
    meta = lt.bdecode(torrent_of(s3, bucket, "hybrid/both.bin", "hybrid")["Body"].read())
    magnet = magnet_of(server, bucket, "hybrid/both.bin", "hybrid")
    parts = [p for p in magnet.split("&") if not p.startswith("ws=")]
    v1_only = "&".join(p for p in parts if "urn:btmh" not in p)
    v2_only = "&".join(p for p in parts if "urn:btih" not in p)
    v2_only = v2_only if v2_only.startswith("magnet:?") else "magnet:?" + v2_only.split("?", 1)[-1]
    assert "btih" in v1_only and "btmh" not in v1_only and "btmh" in v2_only and "btih" not in v2_only
    sessions, handles = [], []
    for name, source in [("by-v1", v1_only), ("by-v2", v2_only), ("by-file", None)]:
        ses = lt.session(SESSION)
        atp = lt.parse_magnet_uri(source) if source else lt.add_torrent_params()
        if source is None:
            atp.ti = lt.torrent_info(without_webseed(meta))
        atp.save_path = str(tmp_path / name)
        handles.append(ses.add_torrent(atp))
        sessions.append(ses)
    wait_seeding(handles, timeout=120)
    for name in ("by-v1", "by-v2", "by-file"):
        assert sha((tmp_path / name / "both.bin").read_bytes()) == sha(data), name


def test_qbittorrent_downloads_from_the_seeder_alone(s3, bucket, public_object, tmp_path):
    """qbittorrent-nox (driven through its Web API) downloads a v1 and a hybrid torrent over the
    peer wire from seedbucket's seeder alone. (transmission refuses peers on 127.0.0.0/8, so
    qBittorrent stands for the third client family here; transmission is tested on the webseed.)"""
    import shutil
    qbt = shutil.which("qbittorrent-nox")
    assert qbt, "qbittorrent-nox is required (./scripts/test.sh installs it)"
    profile = tmp_path / "qbt"
    (profile / "qBittorrent" / "config").mkdir(parents=True)
    webui = _free_port()
    (profile / "qBittorrent" / "config" / "qBittorrent.conf").write_text(f"""[LegalNotice]
Accepted=true
[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Port={_free_port()}
Session\\Interface=lo
Session\\InterfaceName=lo
[Preferences]
WebUI\\Port={webui}
WebUI\\Address=127.0.0.1
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
""")
    proc = subprocess.Popen([qbt, f"--profile={profile}", f"--webui-port={webui}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{webui}/api/v2"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{api}/app/version", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        expected = {}
        for fmt in ("v1", "hybrid"):
            data = public_object(f"qbt/{fmt}.bin", 2_000_000)
            meta = without_webseed(lt.bdecode(torrent_of(s3, bucket, f"qbt/{fmt}.bin", fmt)["Body"].read()))
            tfile = tmp_path / f"{fmt}.torrent"
            tfile.write_bytes(lt.bencode(meta))
            save = tmp_path / f"out-{fmt}"
            save.mkdir()
            subprocess.run(["curl", "-sf", "-F", f"torrents=@{tfile}", "-F", f"savepath={save}",
                            f"{api}/torrents/add"], check=True, capture_output=True)
            expected[save / f"{fmt}.bin"] = sha(data)
        deadline = time.time() + 120
        while time.time() < deadline:
            info = json.loads(urllib.request.urlopen(f"{api}/torrents/info").read())
            if len(info) == 2 and all(t["progress"] == 1 for t in info):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"qBittorrent did not finish: {info}")
        for path, digest in expected.items():
            assert sha(path.read_bytes()) == digest, path
    finally:
        proc.terminate()
        proc.wait(10)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
