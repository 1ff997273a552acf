"""The admin listener's /metrics (the `metrics` crate's Prometheus exporter) parsed by
prometheus_client's own text parser, with every counter checked after known traffic: S3
requests by operation and status with latency histograms, body bytes, torrents issued, piece
hashing, tracker announces, webseed bytes, and the process's own figures."""

import os
import time
import urllib.request

import libtorrent as lt
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, make_client
from test_get_object_torrent import torrent_of
from test_tracker import announce


def scrape(server):
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}/metrics").read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_after_known_traffic(tmp_path):
    s = Server(tmp_path, admin=True)
    try:
        s3 = make_client(s)
        before = scrape(s)
        assert value(before, "seedbucket_tracker_announces_total", transport="http") == 0
        s3.create_bucket(Bucket="metered")
        bodies = [os.urandom(n) for n in (1000, 70_000, 300_000)]
        for i, b in enumerate(bodies):
            s3.put_object(Bucket="metered", Key=f"o{i}", Body=b, ACL="public-read")
        for i in (1, 2):
            assert s3.get_object(Bucket="metered", Key=f"o{i}")["Body"].read() == bodies[i]
        with pytest.raises(ClientError):
            s3.head_object(Bucket="metered", Key="missing")
        meta = lt.bdecode(torrent_of(s3, "metered", "o2")["Body"].read())
        ih = bytes.fromhex(str(lt.torrent_info(meta).info_hashes().v1))
        announce(meta[b"announce"].decode(), ih, b"P" * 20, 7000, 10, "started")
        url = lt.torrent_info(meta).web_seeds()[0]["url"]
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-999"})) as r:
            assert len(r.read()) == 1000
        m = scrape(s)
        req = "seedbucket_s3_requests_total"
        assert value(m, req, operation="PutObject", status="200") == 3
        assert value(m, req, operation="GetObject", status="200") == 2
        assert value(m, req, operation="HeadObject", status="404") == 1
        assert value(m, req, operation="CreateBucket", status="200") == 1
        assert value(m, req, operation="GetObjectTorrent", status="200") == 1
        assert value(m, req, operation="webseed", status="206") == 1
        assert value(m, req, operation="announce", status="200") == 1
        hist = "seedbucket_s3_request_duration_seconds"
        assert value(m, hist + "_count", operation="GetObject") == 2
        assert value(m, hist + "_bucket", operation="GetObject", le="+Inf") == 2
        assert value(m, hist + "_sum", operation="GetObject") > 0
        assert value(m, "seedbucket_s3_bytes_total", direction="in", operation="PutObject") == sum(map(len, bodies))
        assert value(m, "seedbucket_s3_bytes_total", direction="out", operation="GetObject") == len(bodies[1]) + len(bodies[2])
        assert value(m, "seedbucket_torrents_issued_total", format="v1") == 1
        assert value(m, "seedbucket_piece_hashed_bytes_total") >= sum(map(len, bodies))
        assert value(m, "seedbucket_tracker_announces_total", transport="http") == 1
        assert value(m, "seedbucket_uploaded_bytes_total", via="webseed") == 1000
        assert value(m, "seedbucket_torrent_uploaded_bytes_total", torrent="metered/o2", via="webseed") == 1000
        assert value(m, "seedbucket_tracker_peers") >= 1
        assert value(m, "process_resident_memory_bytes") > 0
    finally:
        s.stop()


def test_labels_stay_bounded(tmp_path):
    """Methods and paths a client invents do not become label values."""
    s = Server(tmp_path, admin=True)
    try:
        for method in ("FROB", "Getxyz"):
            req = urllib.request.Request(f"{s.url}/some/where", method=method)
            try:
                urllib.request.urlopen(req)
            except urllib.error.HTTPError:
                pass
        urllib.request.urlopen(f"{s.url}/_seedbucket/health").read()
        m = scrape(s)
        ops = {dict(k[1]).get("operation") for k in m if k[0] == "seedbucket_s3_requests_total"}
        assert "FROB" not in ops and "Getxyz" not in ops and "health" not in ops and "Other" in ops
    finally:
        s.stop()


def test_stored_objects_and_bytes(tmp_path):
    """Embedded mode counts what the data dir holds (current objects, older versions, bytes of
    every version) from its metadata, when /metrics is read (at most every 30 s: this server's
    first scrape comes after the writes)."""
    s = Server(tmp_path, admin=True)
    try:
        s3 = make_client(s)
        s3.create_bucket(Bucket="stored")
        s3.put_object(Bucket="stored", Key="a", Body=b"x" * 1000)
        s3.put_object(Bucket="stored", Key="b", Body=b"y" * 300_000)
        s3.create_bucket(Bucket="stored-versions")
        s3.put_bucket_versioning(Bucket="stored-versions", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="stored-versions", Key="v", Body=b"1" * 10)
        s3.put_object(Bucket="stored-versions", Key="v", Body=b"2" * 20)
        s3.put_object(Bucket="stored-versions", Key="gone", Body=b"3" * 5)
        s3.delete_object(Bucket="stored-versions", Key="gone")  # a delete marker: not counted
        m = scrape(s)
        assert value(m, "seedbucket_stored_objects") == 3  # a, b, v
        assert value(m, "seedbucket_stored_noncurrent_versions") == 2  # v's first, gone's
        assert value(m, "seedbucket_stored_bytes") == 1000 + 300_000 + 10 + 20 + 5
    finally:
        s.stop()


def test_webseed_and_get_count_what_was_sent(tmp_path):
    """A client that hangs up early is counted for what it was sent, not for the whole range
    (the console's traffic and egress figures depend on it)."""
    s = Server(tmp_path, admin=True, torrent_max=64 << 20)
    try:
        s3 = make_client(s)
        s3.create_bucket(Bucket="partial")
        size = 48 << 20
        s3.put_object(Bucket="partial", Key="big.bin", Body=os.urandom(size), ACL="public-read")
        meta = lt.bdecode(torrent_of(s3, "partial", "big.bin")["Body"].read())
        webseed = lt.torrent_info(meta).web_seeds()[0]["url"]
        for url in (webseed, f"{s.url}/partial/big.bin"):
            with urllib.request.urlopen(url) as r:
                assert len(r.read(64 * 1024)) == 64 * 1024
        time.sleep(1)
        m = scrape(s)
        sent_webseed = value(m, "seedbucket_uploaded_bytes_total", via="webseed")
        assert 64 * 1024 <= sent_webseed < size / 2, sent_webseed
    finally:
        s.stop()
