"""The WebSocket tracker for browsers (WebTorrent's protocol) with a real WebSocket client
(`websockets`): offers and answers are relayed between sockets of one swarm, only torrents this
server issued are tracked, private ones need their token, malformed or oversized messages close
that socket only, and stock clients still download torrents that list the WebSocket tracker.
The browser end to end (WebTorrent in Chromium tabs) is tests/interop/test_webtorrent.py."""

import json
import os
import time
import urllib.request

import libtorrent as lt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import Server, make_client
from test_get_object_torrent import torrent_of
from test_seeder import lt_download, sha, without_webseed


def bstr(b: bytes) -> str:
    """A binary string, as WebTorrent sends 20-byte ids."""
    return b.decode("latin-1")


def ws_url(server, path="/announce", query=""):
    return server.url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


def announce(ws, ih, pid, **extra):
    msg = {"action": "announce", "info_hash": bstr(ih), "peer_id": bstr(pid), "numwant": 5,
           "uploaded": 0, "downloaded": 0, "left": 100, "event": "started", "offers": []}
    msg.update(extra)
    ws.send(json.dumps(msg))


def recv(ws, timeout=10):
    return json.loads(ws.recv(timeout=timeout))


def public_torrent(s3, bucket, key, size=300_000):
    s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(size), ACL="public-read")
    meta = lt.bdecode(torrent_of(s3, bucket, key)["Body"].read())
    return meta, bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))


def test_public_torrents_list_the_websocket_tracker(server, s3, bucket):
    meta, _ = public_torrent(s3, bucket, "ws/listed.bin")
    tiers = [[t.decode() for t in tier] for tier in meta[b"announce-list"]]
    assert tiers[0][0].startswith("http://") and tiers[0][0].endswith("/announce")
    assert tiers[1] == [ws_url(server)]
    # Private torrents do not (unless --webtorrent on).
    s3.put_object(Bucket=bucket, Key="ws/private.bin", Body=b"p" * 1000)
    private = lt.bdecode(torrent_of(s3, bucket, "ws/private.bin")["Body"].read())
    assert all(not t.startswith(b"ws") for tier in private[b"announce-list"] for t in tier)
    env = json.loads(torrent_of(s3, bucket, "ws/listed.bin", accept="application/json")["Body"].read())
    assert "tr=ws%3A" in env["data"]["magnet"] or "tr=ws://" in env["data"]["magnet"]


def test_offers_and_answers_are_relayed(server, s3, bucket):
    _, ih = public_torrent(s3, bucket, "ws/relay.bin")
    a_id, b_id = b"-WW0100-aaaaaaaaaaaa", b"-WW0100-bbbbbbbbbbbb"
    with connect(ws_url(server)) as a, connect(ws_url(server, "/_seedbucket/tracker/ws")) as b:
        announce(b, ih, b_id, left=0)
        reply = recv(b)
        assert reply["action"] == "announce" and reply["info_hash"] == bstr(ih)
        assert (reply["complete"], reply["incomplete"]) == (1, 0) and reply["interval"] > 0
        offer_id = os.urandom(20)
        announce(a, ih, a_id, offers=[{"offer_id": bstr(offer_id), "offer": {"type": "offer", "sdp": "v=0 a"}}])
        assert (recv(a)["complete"], 1) == (1, 1)
        # B gets A's offer, naming A.
        got = recv(b)
        assert got["offer"] == {"type": "offer", "sdp": "v=0 a"}
        assert got["peer_id"] == bstr(a_id) and got["offer_id"] == bstr(offer_id)
        # B answers; A gets it, naming B.
        b.send(json.dumps({"action": "announce", "info_hash": bstr(ih), "peer_id": bstr(b_id),
                           "to_peer_id": bstr(a_id), "offer_id": bstr(offer_id),
                           "answer": {"type": "answer", "sdp": "v=0 b"}}))
        ans = recv(a)
        assert ans["answer"] == {"type": "answer", "sdp": "v=0 b"} and ans["peer_id"] == bstr(b_id)
        # Scrape counts the browser swarm.
        a.send(json.dumps({"action": "scrape", "info_hash": [bstr(ih)]}))
        files = recv(a)["files"]
        assert files[bstr(ih)]["complete"] == 1 and files[bstr(ih)]["incomplete"] == 1
        # Another socket cannot take A's peer id (receivers of A's offers learn it).
    with connect(ws_url(server)) as a, connect(ws_url(server)) as thief:
        announce(a, ih, a_id)
        recv(a)
        announce(thief, ih, a_id)
        assert "failure reason" in recv(thief)


def test_only_issued_torrents_and_private_ones_with_their_token(server, s3, bucket):
    with connect(ws_url(server)) as ws:
        announce(ws, os.urandom(20), os.urandom(20))
        assert "unregistered" in recv(ws)["failure reason"]
    s3.put_object(Bucket=bucket, Key="ws/secret.bin", Body=b"s" * 50_000)
    meta = lt.bdecode(torrent_of(s3, bucket, "ws/secret.bin")["Body"].read())
    ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
    query = meta[b"announce"].decode().split("?", 1)[1]
    with connect(ws_url(server)) as ws:
        announce(ws, ih, os.urandom(20))
        assert "unregistered" in recv(ws)["failure reason"]
    with connect(ws_url(server, query=query)) as ws:
        announce(ws, ih, os.urandom(20))
        reply = recv(ws)
        assert "failure reason" not in reply and reply["incomplete"] == 1


def test_malformed_and_oversized_messages_close_that_socket_only(server, s3, bucket):
    _, ih = public_torrent(s3, bucket, "ws/hostile.bin")
    with connect(ws_url(server)) as good:
        announce(good, ih, os.urandom(20))
        recv(good)
        for bad in ("not json", json.dumps({"action": "announce", "info_hash": "short"}),
                    json.dumps({"action": "dance"})):
            with connect(ws_url(server)) as ws:
                ws.send(bad)
                assert "failure reason" in recv(ws)
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
        with connect(ws_url(server), max_size=None) as ws:
            ws.send("x" * (70 * 1024))
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        # The good socket still works.
        announce(good, ih, os.urandom(20), event="")
        assert recv(good)["action"] == "announce"


def test_metrics_count_websocket_announces_and_browser_peers(tmp_path):
    s = Server(tmp_path, admin=True)
    try:
        s3 = make_client(s)
        s3.create_bucket(Bucket="wsmetrics")
        _, ih = public_torrent(s3, "wsmetrics", "m.bin")
        with connect(ws_url(s)) as ws:
            announce(ws, ih, os.urandom(20), uploaded=10, downloaded=300_000, left=0)
            recv(ws)
            text = urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/metrics").read().decode()
        rows = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert rows['seedbucket_tracker_announces_total{transport="websocket"}'] == "1"
        assert rows["seedbucket_browser_peers"] == "1"
        assert rows["seedbucket_browser_reported_downloaded_bytes"] == "300000"
    finally:
        s.stop()


def test_libtorrent_downloads_a_torrent_that_lists_the_websocket_tracker(s3, bucket, tmp_path):
    meta, _ = public_torrent(s3, bucket, "ws/stock.bin", 2_000_000)
    assert any(t.startswith(b"ws://") for tier in meta[b"announce-list"] for t in tier)
    data = s3.get_object(Bucket=bucket, Key="ws/stock.bin")["Body"].read()
    out = lt_download(tmp_path, without_webseed(meta))
    assert sha((out / "stock.bin").read_bytes()) == sha(data)
