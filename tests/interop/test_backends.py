"""The real S3 backends of backends.py work with boto3: a 3-node Garage cluster and moto_server.

Garage must be installed (scripts/test.sh does it); without it these tests fail, they never skip.
"""
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from backends import GarageCluster, MotoServer

MiB = 1024 * 1024


def _name(prefix="b"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _error(excinfo):
    r = excinfo.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


@pytest.fixture(scope="module")
def garage():
    with tempfile.TemporaryDirectory(prefix="garage-") as tmp:
        cluster = GarageCluster(Path(tmp))
        print(f"garage cluster ready in {cluster.startup_seconds:.1f}s: {cluster.endpoints}")
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="module")
def moto():
    with tempfile.TemporaryDirectory(prefix="moto-") as tmp:
        server = MotoServer(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def garage_bucket(garage):
    """A bucket made through node 0's S3 API (CreateBucket), with one object in it."""
    s3 = garage.client(0)
    name = _name()
    s3.create_bucket(Bucket=name)
    # Another node may not know the new bucket for some tens of milliseconds.
    garage.wait_bucket(name)
    s3.put_object(Bucket=name, Key="hello.txt", Body=b"hello from node 0")
    return name


def test_garage_endpoints_are_loopback(garage):
    assert len(garage.endpoints) == 3
    assert all(e.startswith("http://127.0.0.1:") for e in garage.endpoints)
    assert len(set(garage.endpoints)) == 3
    assert garage.region == "garage"
    assert garage.access_key.startswith("GK") and len(garage.access_key) == 26
    assert len(garage.secret_key) == 64


def test_garage_object_written_on_node0_reads_on_nodes_1_and_2(garage, garage_bucket):
    for i in (1, 2):
        got = garage.client(i).get_object(Bucket=garage_bucket, Key="hello.txt")
        assert got["Body"].read() == b"hello from node 0"
    names = {b["Name"] for b in garage.client(2).list_buckets()["Buckets"]}
    assert garage_bucket in names


def test_garage_s3_created_bucket_is_owned_by_the_key(garage):
    """CreateBucket by the key gives it read, write and owner rights: no `garage bucket allow`.

    Garage names such a bucket with a local alias of the key (not a global alias), so the admin
    CLI finds it under `garage key info`, not `garage bucket info NAME`.
    """
    s3 = garage.client(0)
    name = _name()
    s3.create_bucket(Bucket=name)
    info = garage.garage("key", "info", garage.key_name)
    line = next((ln for ln in info.splitlines() if ln.split()[-1:] == [name]), None)
    assert line is not None and line.split()[0] == "RWO", info
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "garage"
    # Owner-only operations work: a website config, then deleting the bucket.
    s3.put_bucket_website(Bucket=name, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})
    s3.delete_bucket(Bucket=name)


def test_garage_cli_created_bucket_needs_allow(garage):
    name = _name()
    garage.garage("bucket", "create", name)
    s3 = garage.client(1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert _error(e)[0] == 403
    garage.allow(name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert garage.client(2).get_object(Bucket=name, Key="k")["Body"].read() == b"x"


def test_garage_multipart_12_mib(garage, garage_bucket):
    s3 = garage.client(0)
    data = os.urandom(12 * MiB)
    parts = [data[0:5 * MiB], data[5 * MiB:10 * MiB], data[10 * MiB:]]
    up = s3.create_multipart_upload(Bucket=garage_bucket, Key="big.bin")
    done = []
    for n, part in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=garage_bucket, Key="big.bin", UploadId=up["UploadId"], PartNumber=n, Body=part)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    r = s3.complete_multipart_upload(Bucket=garage_bucket, Key="big.bin", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done})
    # The multipart ETag is md5 of the parts' md5s, "-" and the part count.
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert r["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    for i in (1, 2):
        got = garage.client(i).get_object(Bucket=garage_bucket, Key="big.bin")
        assert got["ContentLength"] == len(data)
        assert got["ETag"] == r["ETag"]
        assert got["Body"].read() == data


def test_garage_ranged_get_with_if_match(garage, garage_bucket):
    s3 = garage.client(0)
    body = os.urandom(100_000)
    etag = s3.put_object(Bucket=garage_bucket, Key="ranged.bin", Body=body)["ETag"]
    assert etag == f'"{hashlib.md5(body).hexdigest()}"'
    for i in (1, 2):
        got = garage.client(i).get_object(Bucket=garage_bucket, Key="ranged.bin",
                                          Range="bytes=1000-1999", IfMatch=etag)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes 1000-1999/{len(body)}"
        assert got["Body"].read() == body[1000:2000]
    wrong = '"' + "0" * 32 + '"'
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=garage_bucket, Key="ranged.bin", Range="bytes=0-9", IfMatch=wrong)
    # Garage answers 412 with an empty body, so botocore's error code is the status itself.
    assert _error(e)[0] == 412 and _error(e)[1] in ("PreconditionFailed", "412")


def test_garage_survives_sigkill_of_node_2(garage, garage_bucket):
    """Last Garage test: it kills a node (then restarts it).

    The first request after the kill can hang for several seconds (seen 6 to 9 s) while the
    live nodes notice the dead peer; the clients' 30 s read timeout covers it.
    """
    garage.kill(2)
    assert not garage.alive(2)
    s3 = garage.client(0)
    assert s3.get_object(Bucket=garage_bucket, Key="hello.txt")["Body"].read() == b"hello from node 0"
    body = os.urandom(300_000)
    s3.put_object(Bucket=garage_bucket, Key="after-kill.bin", Body=body)
    assert garage.client(1).get_object(Bucket=garage_bucket, Key="after-kill.bin")["Body"].read() == body
    dead = garage.client(2, connect_timeout=1)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        dead.list_buckets()
    # Back up again, node 2 serves what was written while it was down.
    garage.restart(2)
    assert garage.client(2).get_object(Bucket=garage_bucket, Key="after-kill.bin")["Body"].read() == body


def test_moto_create_put_get(moto):
    assert moto.endpoint.startswith("http://127.0.0.1:")
    s3 = moto.client()
    name = _name()
    s3.create_bucket(Bucket=name)
    body = os.urandom(50_000)
    etag = s3.put_object(Bucket=name, Key="k/obj.bin", Body=body)["ETag"]
    assert etag == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=name, Key="k/obj.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == etag
    ranged = s3.get_object(Bucket=name, Key="k/obj.bin", Range="bytes=10-19")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["Body"].read() == body[10:20]
    assert name in {b["Name"] for b in s3.list_buckets()["Buckets"]}
