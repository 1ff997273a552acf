"""Issue 14, items 4-6 on the BitTorrent side, driven with real sockets and real clients:
one address cannot hold more seeder connections than its cap; idle connections give their
slots to a real client (aria2c), which downloads the right bytes; peers that request nothing
are dropped; many announces from one address (many peer ids on one ip:port, many ports, many
forwarded addresses) do not fill a swarm and a real libtorrent peer is still listed; a peer
downloading an object that turns private stops receiving pieces within the documented bound;
ut_metadata requests are limited per connection."""
import os
import socket
import struct
import time
import urllib.parse
import urllib.request

import libtorrent as lt
import pytest

from conftest import Server, make_client
from test_get_object_torrent import torrent_of
from test_seeder import SESSION, aria2c_downloads, seeder_port, sha, without_webseed

# docs/security.md: a revoked reader stops receiving pieces within this many seconds.
REVOCATION_BOUND = 5.0


@pytest.fixture
def start(tmp_path):
    """Starts a server of its own with extra flags; stops it after the test."""
    servers = []

    def run(*extra):
        d = tmp_path / f"srv{len(servers)}"
        d.mkdir()
        s = Server(d, extra=list(extra))
        servers.append(s)
        return s
    yield run
    for s in servers:
        s.stop()


def public_torrent(srv, key, size):
    s3 = make_client(srv)
    s3.create_bucket(Bucket="hard")
    data = os.urandom(size)
    s3.put_object(Bucket="hard", Key=key, Body=data, ACL="public-read")
    meta = lt.bdecode(torrent_of(s3, "hard", key)["Body"].read())
    port, ih = seeder_port(meta)
    return s3, data, meta, port, ih


def connect(port, ih, extensions=False):
    """A handshaked connection; the seeder's handshake is read off."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    reserved = bytearray(8)
    reserved[7] |= 0x04  # fast extension
    if extensions:
        reserved[5] |= 0x10  # extension protocol
    s.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + ih + b"-HP0001-" + os.urandom(6).hex().encode())
    got = b""
    while len(got) < 68:
        chunk = s.recv(68 - len(got))
        if not chunk:
            raise AssertionError("the seeder closed the connection during the handshake")
        got += chunk
    assert got[28:48] == ih
    return s


def is_open(s, wait=0.3):
    """Drains what the seeder sent; False once it closed the connection."""
    s.settimeout(wait)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return False
    except socket.timeout:
        return True
    except OSError:
        return False


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_message(s):
    """(id, payload) of the next message; keep-alives are skipped. EOFError when closed."""
    while True:
        (length,) = struct.unpack(">I", read_exact(s, 4))
        if length:
            body = read_exact(s, length)
            return body[0], body[1:]


def send(s, msg_id, payload=b""):
    s.sendall(struct.pack(">IB", len(payload) + 1, msg_id) + payload)


def wait_closed(s, timeout):
    """Seconds until the seeder closes `s` (reading and dropping what it sends)."""
    start = time.time()
    s.settimeout(0.5)
    while time.time() - start < timeout:
        try:
            if not s.recv(65536):
                return time.time() - start
        except socket.timeout:
            pass
        except OSError:
            return time.time() - start
    raise AssertionError(f"the seeder kept the connection for {timeout}s")


def test_one_address_cannot_hold_more_than_its_cap(start):
    """Default settings: 12 idle connections from 127.0.0.1; only the newest 8 stay open
    (each new one past the cap took the slot of the longest idle)."""
    srv = start()
    _, _, _, port, ih = public_torrent(srv, "cap.bin", 100_000)
    conns = []
    for _ in range(12):
        conns.append(connect(port, ih))
        time.sleep(0.05)
    open_now = [is_open(c) for c in conns]
    print(f"per-address cap: {sum(open_now)} of 12 connections open: {open_now}")
    assert open_now == [False] * 4 + [True] * 8
    for c in conns:
        c.close()


def test_idle_connections_make_room_for_a_real_client(start, tmp_path):
    """The seeder full of idle handshaked connections (20 of 20): aria2c still connects,
    because it takes an idle peer's slot, and downloads the right bytes from the seeder."""
    srv = start("--seed-max-connections", "20", "--seed-max-connections-per-address", "100")
    _, data, meta, port, ih = public_torrent(srv, "full.bin", 2_000_000)
    idle = [connect(port, ih) for _ in range(20)]
    assert all(is_open(c, 0.1) for c in idle)
    aria2c_downloads(tmp_path, without_webseed(meta), data)
    dropped = sum(not is_open(c, 0.1) for c in idle)
    print(f"seeder full of 20 idle peers: aria2c finished; {dropped} idle peers dropped for it")
    assert dropped >= 1
    for c in idle:
        c.close()


def test_peers_that_request_nothing_are_dropped(start):
    """--seed-inactive-timeout 2: a peer that only keeps alive, and one that is unchoked but
    never asks for anything, are dropped; one waiting for an upload slot is kept."""
    srv = start("--seed-inactive-timeout", "2", "--seed-slots", "1")
    _, _, _, port, ih = public_torrent(srv, "quiet.bin", 100_000)
    keepalive_only = connect(port, ih)
    keepalive_only.sendall(bytes(4))
    unchoked_silent = connect(port, ih)
    send(unchoked_silent, 2)  # interested: takes the one slot
    time.sleep(0.3)
    waiting = connect(port, ih)
    send(waiting, 2)  # interested, no slot free: waits in line
    took = wait_closed(keepalive_only, 10)
    print(f"inactive timeout 2 s: keep-alive-only peer dropped after {took:.1f} s")
    assert 1.5 <= took <= 6
    # The silent unchoked peer goes too; then the waiter is unchoked and gets a fresh 2 s.
    wait_closed(unchoked_silent, 10)
    while True:
        msg_id, _ = read_message(waiting)
        if msg_id == 1:  # unchoke
            break
    waiting.close()


def announce(ann, ih, peer_id, port, left=100, numwant=None, forwarded=None):
    q = {"info_hash": ih, "peer_id": peer_id, "port": port, "uploaded": 0, "downloaded": 0,
         "left": left, "compact": 1}
    if numwant is not None:
        q["numwant"] = numwant
    req = urllib.request.Request(ann + ("&" if "?" in ann else "?") + urllib.parse.urlencode(q))
    if forwarded:
        req.add_header("X-Forwarded-For", forwarded)
    with urllib.request.urlopen(req, timeout=10) as r:
        reply = lt.bdecode(r.read())
    assert b"failure reason" not in reply, reply
    return reply


def listed_ports(reply):
    peers = reply[b"peers"]
    return {int.from_bytes(peers[i + 4:i + 6], "big") for i in range(0, len(peers), 6)}


def test_one_address_cannot_fill_a_swarm(start, tmp_path):
    """With the announce rate limit off (the flooder's best case) and 127.0.0.1 trusted to
    forward client addresses: 300 peer ids on one ip:port make one entry; 300 ports of one
    address hold that address's cap (16); 200 forwarded addresses fill a 50-entry swarm,
    whose stalest entries then make room: a real libtorrent peer still gets in and is listed."""
    srv = start("--tracker-rate-limit", "0", "--tracker-max-peers-per-torrent", "50",
                "--trusted-proxy", "127.0.0.1")
    s3, data, meta, _, ih = public_torrent(srv, "swarm.bin", 300_000)
    ann = meta[b"announce"].decode()
    for i in range(300):
        r = announce(ann, ih, b"ID%018d" % i, 7000)
    assert r[b"incomplete"] == 1, r
    for p in range(10_000, 10_300):
        r = announce(ann, ih, b"PORT%016d" % p, p)
    assert r[b"incomplete"] == 16, r
    for i in range(200):
        r = announce(ann, ih, b"FWD%017d" % i, 6881, forwarded=f"10.9.{i // 250}.{i % 250 + 1}")
    # (`complete` counts the server's own seeder too, which is not a swarm entry.)
    assert r[b"incomplete"] == 50, r
    print(f"swarm after 800 flooding announces: {r[b'incomplete']} entries (cap 50)")
    # A real peer announces (from 127.0.0.1, not forwarded) and appears in the lists.
    ses = lt.session(SESSION)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(without_webseed(meta))
    atp.save_path = str(tmp_path / "real")
    h = ses.add_torrent(atp)
    lt_port = ses.listen_port()
    deadline = time.time() + 30
    while time.time() < deadline:
        r = announce(ann, ih, b"OBSERVER" + b"0" * 12, 1, numwant=200, forwarded="10.200.0.1")
        if lt_port in listed_ports(r):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"libtorrent's port {lt_port} never listed: {sorted(listed_ports(r))}")
    assert r[b"incomplete"] <= 50
    ses.remove_torrent(h)


def flip_while_downloading(port, ih, flip, torrent_len, piece_len):
    """Requests blocks back to back on one connection; calls `flip()` after a second of
    downloading, then returns (seconds from the end of `flip()` to the last piece received,
    blocks received after it) once the seeder closes the connection."""
    s = connect(port, ih)
    send(s, 2)
    while read_message(s)[0] != 1:
        pass
    started, flipped_at, last_piece, after = time.time(), None, None, 0
    blocks = [(i, b) for i in range(torrent_len // piece_len) for b in range(0, piece_len, 16384)]
    n = 0
    try:
        while time.time() - started < 30:
            i, b = blocks[n % len(blocks)]
            n += 1
            send(s, 6, struct.pack(">III", i, b, 16384))
            while True:
                msg_id, _ = read_message(s)
                if msg_id == 7:
                    break
                if msg_id == 16:  # reject
                    break
            if msg_id == 7 and flipped_at is not None:
                last_piece = time.time()
                after += 1
            if flipped_at is None and time.time() - started > 1:
                flip()
                flipped_at = time.time()
    except (EOFError, ConnectionResetError):
        pass
    assert flipped_at is not None, "the download ended before access was revoked"
    return (last_piece - flipped_at if last_piece else 0.0), after


def test_revocation_stops_a_connected_peer_within_the_bound(start):
    """A peer downloading a public-read object over the peer wire: the object turns private,
    and the seeder sends no piece later than the documented bound and closes the connection."""
    srv = start()
    s3, _, meta, port, ih = public_torrent(srv, "revoke.bin", 4 * 1024 * 1024)
    info = meta[b"info"]
    lag, after = flip_while_downloading(
        port, ih, lambda: s3.put_object_acl(Bucket="hard", Key="revoke.bin", ACL="private"),
        info[b"length"], info[b"piece length"])
    print(f"revocation: last piece {lag:.2f} s after the ACL change ({after} blocks after it)")
    assert lag <= REVOCATION_BOUND


def test_ut_metadata_requests_are_limited_per_connection(start):
    """A one-piece info dictionary: 4 ut_metadata requests are answered, the 5th closes the
    connection."""
    srv = start()
    _, _, meta, port, ih = public_torrent(srv, "meta.bin", 100_000)
    assert len(lt.bencode(meta[b"info"])) <= 16384
    s = connect(port, ih, extensions=True)
    send(s, 20, b"\x00" + lt.bencode({b"m": {b"ut_metadata": 3}}))
    s.settimeout(5)

    def ask():
        """Sends one request; True once its answer arrives, False if the seeder hung up."""
        send(s, 20, b"\x01" + lt.bencode({b"msg_type": 0, b"piece": 0}))
        try:
            while True:
                msg_id, payload = read_message(s)
                if msg_id == 20 and payload[:1] == b"\x03":
                    return True
        except (EOFError, ConnectionResetError):
            return False
    answered = [ask() for _ in range(5)]
    print(f"ut_metadata: answers to 5 requests: {answered}")
    assert answered == [True] * 4 + [False]
