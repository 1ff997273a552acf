"""The seeder is reached on the first try by what stock clients dial first: uTP (BEP 29) and
encrypted handshakes (Message Stream Encryption). libtorrent keeps its defaults (uTP and
encryption on; only DHT, LSD, UPnP, NAT-PMP and PEX off), re-dials the seeder every second
for the first 10 s, and must get its first block within 1 s of its first connection attempt;
then encryption forced, uTP alone, aria2c requiring encryption, and transmission inside a
network namespace (it refuses loopback peers)."""
import os
import subprocess
import time
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest

from test_get_object_torrent import torrent_of
from test_seeder import aria2c_downloads, magnet_of, public_object, sha, without_webseed  # noqa: F401 (fixture)

# Only what the test rules turn off; everything else is libtorrent's default.
DEFAULTS = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False}
ALERTS = (lt.alert.category_t.error_notification | lt.alert.category_t.connect_notification
          | lt.alert.category_t.peer_notification | lt.alert.category_t.block_progress_notification
          | lt.alert.category_t.status_notification
          | lt.alert.category_t.piece_progress_notification)
FORCED_ENCRYPTION = {"out_enc_policy": int(lt.enc_policy.forced),
                     "in_enc_policy": int(lt.enc_policy.forced),
                     "allowed_enc_level": int(lt.enc_level.rc4)}
UTP_ONLY = {"enable_outgoing_tcp": False, "enable_incoming_tcp": False}


def session(extra=None):
    """A libtorrent session at its defaults, but for the discovery features the test rules turn
    off; PEX goes with the default plugins (ut_metadata is added back for magnets)."""
    settings = dict(DEFAULTS, alert_mask=ALERTS, **(extra or {}))
    ses = lt.session(settings, flags=0)
    ses.add_extension("ut_metadata")
    ses.add_extension("smart_ban")
    return ses


def download_redialling(tmp_path, port, meta=None, magnet=None, extra=None, timeout=60):
    """Downloads from the seeder alone (no webseed), calling connect_peer on it every second
    for the first 10 s. Returns (save dir, seconds from the first connection attempt to the
    first block received, the connection alerts seen)."""
    ses = session(extra)
    atp = lt.parse_magnet_uri(magnet) if magnet else lt.add_torrent_params()
    if meta is not None:
        atp.ti = lt.torrent_info(meta)
    atp.save_path = str(tmp_path / "leech")
    started = time.monotonic()
    h = ses.add_torrent(atp)
    first_attempt = first_block = None
    seen = []
    next_dial = started
    deadline = started + timeout
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_dial and now - started < 10:
                h.connect_peer(("127.0.0.1", port))
                next_dial = now + 1
            for a in ses.pop_alerts():
                t = time.monotonic()
                if isinstance(a, lt.peer_connect_alert) and first_attempt is None:
                    first_attempt = t
                if isinstance(a, (lt.peer_connect_alert, lt.peer_disconnected_alert,
                                  lt.peer_error_alert)):
                    seen.append(f"{t - started:.2f}s {a.message()}")
                # (v2 torrents report finished pieces without per-block alerts)
                if (isinstance(a, (lt.block_finished_alert, lt.piece_finished_alert))
                        and first_block is None):
                    first_block = t
            if h.status().is_seeding:
                break
            time.sleep(0.01)
        status = h.status()
        assert status.is_seeding, (f"not finished in {timeout}s: {status.state} {status.progress}",
                                   seen[-20:])
        assert first_attempt is not None and first_block is not None, seen[-20:]
        return tmp_path / "leech", first_block - first_attempt, seen
    finally:
        ses.remove_torrent(h)


def seeder_port(meta):
    """The seeder's port, from the peer list our tracker gives for the torrent's handshake hash
    (v1, or v2 truncated)."""
    hashes = lt.torrent_info(meta).info_hashes()
    ih = bytes.fromhex(str(hashes.v1)) if hashes.has_v1() else bytes.fromhex(str(hashes.v2))[:20]
    ann = meta[b"announce"].decode()
    q = urllib.parse.urlencode({"info_hash": ih, "peer_id": b"Q" * 20, "port": 1, "uploaded": 0,
                                "downloaded": 0, "left": 0, "event": "stopped"})
    with urllib.request.urlopen(ann + ("&" if "?" in ann else "?") + q) as r:
        reply = lt.bdecode(r.read())
    assert b"peers" in reply, reply
    return int.from_bytes(reply[b"peers"][4:6], "big")


def meta_of(s3, bucket, key, fmt):
    return without_webseed(lt.bdecode(torrent_of(s3, bucket, key, fmt)["Body"].read()))


@pytest.mark.parametrize("fmt", ["v1", "hybrid", "v2"])
def test_libtorrent_defaults_reach_the_seeder_at_once(s3, bucket, public_object, tmp_path, fmt):
    data = public_object(f"transports/{fmt}.bin", 2_500_000)
    meta = meta_of(s3, bucket, f"transports/{fmt}.bin", fmt)
    port = seeder_port(meta)
    out, ttfb, seen = download_redialling(tmp_path, port, meta=meta)
    assert sha((out / f"{fmt}.bin").read_bytes()) == sha(data)
    assert ttfb < 1.0, (ttfb, seen[:10])


def test_libtorrent_defaults_resolve_a_magnet_at_once(server, s3, bucket, public_object, tmp_path):
    data = public_object("transports/magnet.bin", 1_500_000)
    port = seeder_port(meta_of(s3, bucket, "transports/magnet.bin", "hybrid"))
    magnet = magnet_of(server, bucket, "transports/magnet.bin", "hybrid")
    no_ws = "&".join(p for p in magnet.split("&") if not p.startswith("ws="))
    out, ttfb, seen = download_redialling(tmp_path, port, magnet=no_ws)
    assert sha((out / "magnet.bin").read_bytes()) == sha(data)
    assert ttfb < 1.0, (ttfb, seen[:10])


@pytest.mark.parametrize("transport,fmt", [("encryption-forced", "v1"),
                                           ("encryption-forced", "hybrid"),
                                           ("utp-only", "v1"), ("utp-only", "v2"),
                                           ("utp-encryption-forced", "v1")])
def test_libtorrent_with_one_transport(s3, bucket, public_object, tmp_path, transport, fmt):
    """Encryption required by the client (TCP or uTP), uTP alone (TCP off in the client), or
    both."""
    extra = {"encryption-forced": FORCED_ENCRYPTION, "utp-only": UTP_ONLY,
             "utp-encryption-forced": dict(UTP_ONLY, **FORCED_ENCRYPTION)}[transport]
    key = f"transports/{transport}-{fmt}.bin"
    data = public_object(key, 2_000_000)
    meta = meta_of(s3, bucket, key, fmt)
    out, ttfb, seen = download_redialling(tmp_path, seeder_port(meta), meta=meta, extra=extra)
    assert sha((out / key.split("/")[1]).read_bytes()) == sha(data)
    assert ttfb < 1.0, (ttfb, seen[:10])


def test_aria2c_requiring_encryption(s3, bucket, public_object, tmp_path):
    data = public_object("transports/aria-enc.bin", 2_000_000)
    aria2c_downloads(tmp_path, meta_of(s3, bucket, "transports/aria-enc.bin", "v1"), data,
                     "--bt-require-crypto=true", "--bt-min-crypto-level=arc4")


class Namespace:
    """A network namespace joined to this one by a veth pair: `inside` and `outside` are
    addresses of a /30 that exist only on the two ends, so nothing else can be reached."""

    def __init__(self):
        n = os.getpid() % 250 + 1
        self.name = f"sbtest{os.getpid()}"
        self.host_if, self.ns_if = f"sbh{os.getpid()}"[:15], f"sbn{os.getpid()}"[:15]
        self.outside, self.inside = f"10.231.{n}.1", f"10.231.{n}.2"
        for cmd in (["ip", "netns", "add", self.name],
                    ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
                    ["ip", "link", "set", self.ns_if, "netns", self.name],
                    ["ip", "addr", "add", f"{self.outside}/30", "dev", self.host_if],
                    ["ip", "link", "set", self.host_if, "up"],
                    *self.run_inside(["ip", "addr", "add", f"{self.inside}/30", "dev", self.ns_if]),
                    *self.run_inside(["ip", "link", "set", self.ns_if, "up"]),
                    *self.run_inside(["ip", "link", "set", "lo", "up"])):
            subprocess.run(cmd, check=True, capture_output=True)

    def run_inside(self, cmd):
        return [["ip", "netns", "exec", self.name, *cmd]]

    def close(self):
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    assert os.geteuid() == 0 and subprocess.run(["ip", "netns", "list"]).returncode == 0, \
        "transmission refuses loopback peers: this test needs root and `ip netns` to give it another address"
    ns = Namespace()
    yield ns
    ns.close()


def test_transmission_downloads_from_the_seeder_in_a_namespace(netns, tmp_path):
    """transmission refuses peers on 127.0.0.0/8, so it runs in a network namespace of its own
    and reaches a seedbucket listening on the namespace's other end. Its settings are its
    defaults (uTP and encryption preferred), but for DHT, LPD, PEX and port forwarding."""
    import json
    from conftest import Server, make_client, run_transmission
    (tmp_path / "srv").mkdir()
    server = Server(tmp_path / "srv", host=netns.outside)
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket="netns")
        data = os.urandom(3_000_000 + 17)
        s3.put_object(Bucket="netns", Key="tr.bin", Body=data, ACL="public-read")
        meta = meta_of(s3, "netns", "tr.bin", "v1")
        assert meta[b"announce"].startswith(f"http://{netns.outside}:".encode())
        tfile = tmp_path / "t.torrent"
        tfile.write_bytes(lt.bencode(meta))
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        (cfg / "settings.json").write_text(json.dumps({
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
            "port-forwarding-enabled": False, "peer-port": 51413,
            "bind-address-ipv4": netns.inside, "rpc-enabled": False,
            "ratio-limit-enabled": True, "ratio-limit": 0}))
        try:
            target = run_transmission(netns.run_inside([])[0], cfg, tfile, tmp_path, "tr.bin", len(data))
        except AssertionError:
            print("server log (last lines):\n" + "\n".join(server.logs().splitlines()[-60:]))
            raise
        assert sha(target.read_bytes()) == sha(data)
    finally:
        server.stop()


def test_metrics_count_transports_and_encryption(tmp_path):
    """The admin listener's /metrics counts seeder connections by transport and encrypted
    handshakes by payload method: a uTP download with RC4 forced, then a plain aria2c one."""
    from conftest import Server, make_client
    (tmp_path / "srv").mkdir()
    server = Server(tmp_path / "srv", admin=True)
    try:
        s3 = make_client(server)
        s3.create_bucket(Bucket="metrics")
        data = os.urandom(1_000_000)
        s3.put_object(Bucket="metrics", Key="m.bin", Body=data, ACL="public-read")
        meta = meta_of(s3, "metrics", "m.bin", "v1")
        before = server.metrics()
        assert before['seedbucket_seeder_connections_accepted_total{transport="utp"}'] == 0
        out, _, _ = download_redialling(tmp_path, seeder_port(meta), meta=meta,
                                        extra=dict(UTP_ONLY, **FORCED_ENCRYPTION))
        assert sha((out / "m.bin").read_bytes()) == sha(data)
        aria2c_downloads(tmp_path, meta, data)
        after = server.metrics()
        assert after['seedbucket_seeder_connections_accepted_total{transport="utp"}'] >= 1
        assert after['seedbucket_seeder_encrypted_handshakes_total{payload="rc4"}'] >= 1
        assert after['seedbucket_seeder_connections_accepted_total{transport="tcp"}'] >= 1
        assert after["seedbucket_seeder_blocks_sent_total"] >= 2 * (1_000_000 // 16384)
    finally:
        server.stop()
