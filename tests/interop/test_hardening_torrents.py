"""Torrents nobody can squat (issue 14, item 2) and what a guess of a private info-hash learns
(item 6): an info-hash maps to every object with those bytes and that file name, each torrent
works while its own object is unchanged, tokens open only the object they were issued for, a
guessed private info-hash is answered like an unknown one, a deleted private object is 410.

Real server, real clients (urllib, sockets, libtorrent, aria2c); with SEEDBUCKET_TEST_BACKEND
set, against a gateway in front of that backend."""
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import libtorrent as lt
import pytest

from conftest import TEST_BACKEND, Server, make_client, start_backend
from test_get_object_torrent import torrent_of
from test_seeder import aria2c_downloads, handshake, lt_download, without_webseed
from test_tracker import udp_announce, udp_connect


def sha(b):
    return hashlib.sha256(b).hexdigest()


def meta_of(s3, bucket, key, fmt="hybrid"):
    return lt.bdecode(torrent_of(s3, bucket, key, fmt)["Body"].read())


def v1_hash(meta):
    return bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))


def webseed(meta):
    return meta[b"url-list"][0].decode() if isinstance(meta[b"url-list"], list) else meta[b"url-list"].decode()


def http(url):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def announce(url, ih, peer_id, port, left=0, event="started"):
    q = urllib.parse.urlencode({"info_hash": ih, "peer_id": peer_id, "port": port, "uploaded": 0,
                                "downloaded": 0, "left": left, "event": event})
    with urllib.request.urlopen(url + ("&" if "?" in url else "?") + q, timeout=10) as r:
        assert r.status == 200
        return lt.bdecode(r.read())


def seeder_port(reply):
    """The server's seeder: always the first peer of an accepted announce."""
    return int.from_bytes(reply[b"peers"][4:6], "big")


def assert_torrent_works(meta, data, peer_id=b"W" * 20):
    """Webseed 200 with the bytes, tracker accepts, seeder handshakes the announcing address."""
    status, body = http(webseed(meta))
    assert status == 200, body
    assert sha(body) == sha(data)
    reply = announce(meta[b"announce"].decode(), v1_hash(meta), peer_id, 7100)
    assert b"failure reason" not in reply, reply
    hs = handshake(seeder_port(reply), v1_hash(meta))
    assert len(hs) == 68 and hs[28:48] == v1_hash(meta), "the seeder refused the torrent"


@pytest.fixture
def other(server, s3):
    """A second user with a bucket of their own."""
    ak, sk, _ = server.create_key("u-" + uuid.uuid4().hex[:8])
    c = make_client(server, ak, sk)
    b = "o-" + uuid.uuid4().hex[:12]
    c.create_bucket(Bucket=b)
    return c, b


def test_same_bytes_uploaded_again_keep_their_torrent_across_a_restart():
    """Re-uploading identical bytes to the same key keeps the torrent file working (webseed,
    tracker, seeder), with or without asking ?torrent again, and after a restart."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backend = None if TEST_BACKEND == "embedded" else start_backend(TEST_BACKEND, tmp)
        node = Server(tmp, backend=backend)
        try:
            s3 = make_client(node)
            s3.create_bucket(Bucket="again")
            data = os.urandom(1_200_000)
            s3.put_object(Bucket="again", Key="m/weights.bin", Body=data)  # private
            meta = meta_of(s3, "again", "m/weights.bin")
            assert meta[b"info"][b"private"] == 1
            assert_torrent_works(meta, data)
            s3.put_object(Bucket="again", Key="m/weights.bin", Body=data)
            assert_torrent_works(meta, data, b"X" * 20)  # the torrent file in hand, not asked again
            again = meta_of(s3, "again", "m/weights.bin")
            assert v1_hash(again) == v1_hash(meta)
            s3.put_object(Bucket="again", Key="m/weights.bin", Body=data)
            assert_torrent_works(again, data, b"Y" * 20)
            node.stop()
            node = Server(tmp, backend=backend, port=node.port)
            assert_torrent_works(meta, data, b"Z" * 20)
            # The seeder alone (no webseed) gives a real client every byte.
            out = lt_download(tmp, without_webseed(meta))
            assert sha((out / "weights.bin").read_bytes()) == sha(data)
        finally:
            node.stop()
            if backend is not None:
                backend.stop()


@pytest.mark.parametrize("acl", ["private", "public-read"])
def test_another_bucket_with_the_same_bytes_cannot_take_a_torrent(s3, bucket, other, tmp_path, acl):
    data = os.urandom(900_000)
    them, their_bucket = other
    # They upload the same bytes under the same file name and ask for the torrent first.
    them.put_object(Bucket=their_bucket, Key="copy/weights.bin", Body=data, ACL=acl)
    theirs = meta_of(them, their_bucket, "copy/weights.bin")
    s3.put_object(Bucket=bucket, Key="models/weights.bin", Body=data, ACL=acl)
    mine = meta_of(s3, bucket, "models/weights.bin")
    assert v1_hash(mine) == v1_hash(theirs)
    assert_torrent_works(mine, data)
    them.delete_object(Bucket=their_bucket, Key="copy/weights.bin")
    assert_torrent_works(mine, data, b"V" * 20)
    aria2c_downloads(tmp_path, mine, data)
    if acl == "private":
        # Their token opens only their object: gone now, though ours has the same bytes.
        assert http(webseed(theirs))[0] == 410
        refused = announce(theirs[b"announce"].decode(), v1_hash(theirs), b"T" * 20, 7200)
        assert b"gone" in refused[b"failure reason"]
    else:
        # An open torrent is served by any unchanged public copy.
        assert http(webseed(theirs)) == (200, data)


def test_a_private_token_opens_only_its_own_object(s3, bucket, other):
    data = os.urandom(300_000)
    them, their_bucket = other
    s3.put_object(Bucket=bucket, Key="a/shared.bin", Body=data)
    them.put_object(Bucket=their_bucket, Key="b/shared.bin", Body=data)
    mine, theirs = meta_of(s3, bucket, "a/shared.bin"), meta_of(them, their_bucket, "b/shared.bin")
    assert v1_hash(mine) == v1_hash(theirs)
    assert_torrent_works(mine, data)
    assert_torrent_works(theirs, data, b"U" * 20)
    # Our object goes: our token is refused, though their copy still has the bytes.
    s3.delete_object(Bucket=bucket, Key="a/shared.bin")
    assert http(webseed(mine))[0] == 410
    assert b"gone" in announce(mine[b"announce"].decode(), v1_hash(mine), b"M" * 20, 7300)[b"failure reason"]
    assert_torrent_works(theirs, data, b"N" * 20)
    # Our object is back, theirs goes: the same the other way round.
    s3.put_object(Bucket=bucket, Key="a/shared.bin", Body=data)
    them.delete_object(Bucket=their_bucket, Key="b/shared.bin")
    assert http(webseed(theirs))[0] == 410
    assert b"gone" in announce(theirs[b"announce"].decode(), v1_hash(theirs), b"O" * 20, 7301)[b"failure reason"]
    assert_torrent_works(mine, data, b"P" * 20)
    # A token with another object's id spliced in is not genuine.
    my_id = webseed(mine).split("/")[-2].split(".")[2]
    their_id = webseed(theirs).split("/")[-2].split(".")[2]
    assert my_id != their_id
    assert http(webseed(mine).replace(my_id, their_id))[0] == 404


def test_a_guessed_private_info_hash_is_answered_like_an_unknown_one(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="g/secret.bin", Body=os.urandom(100_000))
    meta = meta_of(s3, bucket, "g/secret.bin", "v1")
    ih, unknown = v1_hash(meta), os.urandom(20)
    base = meta[b"announce"].decode().split("/announce?")[0]
    # Webseed: no token, a forged token, another name: all as for an unknown info-hash.
    for token in ["public", "9999999999.SBFAKE.00000000000000000000000000000000",
                  "9999999999.SBFAKE.0123456789abcdef0123456789abcdef.00000000000000000000000000000000"]:
        for name in ["secret.bin", "guess.bin"]:
            guessed = http(f"{base}/_seedbucket/webseed/{ih.hex()}/{token}/{name}")
            assert guessed == http(f"{base}/_seedbucket/webseed/{unknown.hex()}/{token}/{name}")
            assert guessed[0] == 404
    # HTTP tracker: no token and a forged one, as for an unknown info-hash.
    for url in [f"{base}/announce", f"{base}/announce?sb_token=SBFAKE.00000000000000000000000000000000"]:
        guessed = announce(url, ih, b"G" * 20, 7400)[b"failure reason"]
        assert guessed == announce(url, unknown, b"G" * 20, 7400)[b"failure reason"]
        assert b"unregistered" in guessed
    # UDP tracker.
    cid = udp_connect(server.port)
    guessed = udp_announce(server.port, cid, ih, b"G" * 20, 7401, 5)
    assert struct.unpack(">I", guessed[:4])[0] == 3
    assert guessed == udp_announce(server.port, cid, unknown, b"G" * 20, 7401, 5)


def test_torrent_names_drop_backslash_paths_and_control_bytes(s3, bucket):
    for key, name in [("n/..\\..\\evil.bin", b"evil.bin"), ("n/dir\\..", b"dir"),
                      ("n/we\x00ights\x01.bin", b"we_ights_.bin")]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000, ACL="public-read")
        meta = meta_of(s3, bucket, key)
        assert meta[b"info"][b"name"] == name
        assert http(webseed(meta)) == (200, b"x" * 1000)


@pytest.mark.parametrize("acl", ["private", "public-read"])
def test_a_deleted_object_is_gone_on_webseed_and_tracker(server, s3, bucket, acl):
    s3.put_object(Bucket=bucket, Key="d/doomed.bin", Body=os.urandom(50_000), ACL=acl)
    meta = meta_of(s3, bucket, "d/doomed.bin", "v1")
    assert announce(meta[b"announce"].decode(), v1_hash(meta), b"D" * 20, 7500).get(b"failure reason") is None
    s3.delete_object(Bucket=bucket, Key="d/doomed.bin")
    status, body = http(webseed(meta))
    assert status == 410, body
    reason = announce(meta[b"announce"].decode(), v1_hash(meta), b"E" * 20, 7501)[b"failure reason"]
    assert b"gone" in reason
    url = ("/announce?" + meta[b"announce"].decode().split("?", 1)[1]).encode() if acl == "private" else b""
    r = udp_announce(server.port, udp_connect(server.port), v1_hash(meta), b"E" * 20, 7502, 5, url=url)
    assert struct.unpack(">I", r[:4])[0] == 3 and b"gone" in r[8:]
