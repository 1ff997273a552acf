"""SSE-S3 (`x-amz-server-side-encryption: AES256`): encrypted at rest with the server's master
key (sse-s3-keys.json in the data dir), read back transparently, reported on every answer, and
still served over BitTorrent (the seeder and the webseed decrypt). Embedded mode; the last test
runs a gateway in front of an embedded seedbucket, which then encrypts with its own key."""

import os
import subprocess
from pathlib import Path

import libtorrent as lt
import pytest
from botocore.exceptions import ClientError

from conftest import Server, _binary, make_client
from test_get_object_torrent import torrent_of
from test_seeder import aria2c_downloads, without_webseed

AES = {"ServerSideEncryption": "AES256"}


def marker():
    return b"SSE-S3-AT-REST-" + os.urandom(8).hex().encode()


def plaintext_at_rest(data_dir, mark):
    """The files under data_dir that hold `mark` in the clear."""
    return [f for f in Path(data_dir).rglob("*") if f.is_file() and mark in f.read_bytes()]


def test_put_get_head_and_ranges_report_and_decrypt(server, s3, bucket):
    mark = marker()
    body = mark * 30000
    put = s3.put_object(Bucket=bucket, Key="big", Body=body, **AES)
    assert put["ServerSideEncryption"] == "AES256"
    s3.put_object(Bucket=bucket, Key="small", Body=mark, **AES)  # inline in the database
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(body)
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == body
    for lo, hi in ((0, 0), (65530, 65545), (len(body) - 7, len(body) - 1), (100000, 300000)):
        r = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={lo}-{hi}")
        assert r["Body"].read() == body[lo:hi + 1]
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == mark
    assert plaintext_at_rest(server.data_dir, mark) == []
    # The same bytes without SSE-S3 are on disk as sent (the check above can see plaintext).
    s3.put_object(Bucket=bucket, Key="plain", Body=body)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain")
    assert plaintext_at_rest(server.data_dir, mark) != []


def test_multipart_and_copies(server, s3, bucket):
    mark = marker()
    parts = [mark * 200000, mark * 1000]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **AES)
    assert up["ServerSideEncryption"] == "AES256"
    etags = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=p)
        assert r["ServerSideEncryption"] == "AES256"
        etags.append({"ETag": r["ETag"], "PartNumber": n})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": etags})
    assert done["ServerSideEncryption"] == "AES256"
    whole = b"".join(parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == whole
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == parts[1]
    assert plaintext_at_rest(server.data_dir, mark) == []
    # Encrypted -> plain, plain -> encrypted, and in place (adding encryption is a change).
    s3.copy_object(Bucket=bucket, Key="mp-plain", CopySource={"Bucket": bucket, "Key": "mp"})
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="mp-plain")
    assert s3.get_object(Bucket=bucket, Key="mp-plain")["Body"].read() == whole
    c = s3.copy_object(Bucket=bucket, Key="again", CopySource={"Bucket": bucket, "Key": "mp-plain"}, **AES)
    assert c["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="again")["Body"].read() == whole
    s3.put_object(Bucket=bucket, Key="self", Body=b"in place")
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"}, **AES)
    assert s3.head_object(Bucket=bucket, Key="self")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="self")["Body"].read() == b"in place"
    # Again in place with the header (re-encrypts with the current key), then without (decrypts).
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"}, **AES)
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="self")
    assert s3.get_object(Bucket=bucket, Key="self")["Body"].read() == b"in place"
    with pytest.raises(ClientError) as e:  # a plain object onto itself, nothing changed
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert e.value.response["Error"]["Code"] == "InvalidRequest"



def test_refusals(s3, bucket):
    key = os.urandom(32)
    for extra in ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key},):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="both", Body=b"x", **AES, **extra)
        assert e.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    names = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "both" not in names and "kms" not in names


def test_an_encrypted_object_downloads_from_the_seeder_and_the_webseed(s3, bucket, tmp_path):
    data = os.urandom(1_500_000)
    s3.put_object(Bucket=bucket, Key="enc.bin", Body=data, ACL="public-read", **AES)
    meta = lt.bdecode(torrent_of(s3, bucket, "enc.bin")["Body"].read())
    assert meta[b"info"][b"length"] == len(data)
    for name, t in (("seeder", without_webseed(meta)),
                    ("webseed", {k: v for k, v in meta.items() if k not in (b"announce", b"announce-list")})):
        (tmp_path / name).mkdir()
        aria2c_downloads(tmp_path / name, t, data)


def test_rotated_master_keys_keep_old_objects_readable(tmp_path):
    s = Server(tmp_path)
    s3 = make_client(s)
    s3.create_bucket(Bucket="rot")
    s3.put_object(Bucket="rot", Key="old", Body=b"written with key 1", **AES)
    keys = Path(s.data_dir) / "sse-s3-keys.json"
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run([_binary(), "sse-key", "rotate", "--data-dir", str(s.data_dir)],
                         env=s.env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "key 2" in out.stdout
    s.stop()
    s = Server(tmp_path, port=s.port)
    try:
        s3.put_object(Bucket="rot", Key="new", Body=b"written with key 2", **AES)
        assert s3.get_object(Bucket="rot", Key="old")["Body"].read() == b"written with key 1"
        assert s3.get_object(Bucket="rot", Key="new")["Body"].read() == b"written with key 2"
    finally:
        s.stop()


def test_gateway_asks_the_backend_to_encrypt(tmp_path):
    for d in ("backend", "gw"):
        (tmp_path / d).mkdir()
    backend = Server(tmp_path / "backend")
    gw = Server(tmp_path / "gw", backend=backend)
    try:
        s3 = make_client(gw)
        s3.create_bucket(Bucket="gwenc")
        mark = marker()
        put = s3.put_object(Bucket="gwenc", Key="o", Body=mark * 20000, **AES)
        assert put["ServerSideEncryption"] == "AES256"
        assert s3.head_object(Bucket="gwenc", Key="o")["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket="gwenc", Key="o")["Body"].read() == mark * 20000
        assert plaintext_at_rest(backend.data_dir, mark) == []
        s3.put_object(Bucket="gwenc", Key="p", Body=b"plain")
        assert "ServerSideEncryption" not in s3.head_object(Bucket="gwenc", Key="p")
    finally:
        gw.stop()
        backend.stop()


def test_bucket_default_encryption(server, s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "ServerSideEncryptionConfigurationNotFoundError"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    got = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert got[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    mark = marker()
    put = s3.put_object(Bucket=bucket, Key="by-default", Body=mark * 20000)
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="by-default")["ServerSideEncryption"] == "AES256"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert up["ServerSideEncryption"] == "AES256"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"])
    # An SSE-C write keeps the customer's key; the default does not apply to it.
    ck = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    s3.put_object(Bucket=bucket, Key="customer", Body=b"c", **ck)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="customer", **ck)
    assert plaintext_at_rest(server.data_dir, mark) == []
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    s3.delete_bucket_encryption(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_encryption(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="after", Body=b"plain")
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="after")
    assert s3.get_object(Bucket=bucket, Key="by-default")["Body"].read() == mark * 20000
