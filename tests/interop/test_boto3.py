"""boto3 against the server: exact statuses and S3 error codes."""
import base64
import hashlib
import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import botocore
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from conftest import make_client


def err(e: ClientError):
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def expect(status, code, fn, *args, **kwargs):
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    got = err(e.value)
    assert got[0] == status and (code is None or got[1] == code), got


def test_buckets(s3, server):
    s3.create_bucket(Bucket="boto-buckets")
    expect(409, "BucketAlreadyOwnedByYou", s3.create_bucket, Bucket="boto-buckets")
    for bad in ["ab", "UPPER", "under_score", "192.168.0.1", "-lead", "a..b"]:
        expect(400, "InvalidBucketName", s3.create_bucket, Bucket=bad)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "boto-buckets" in names
    s3.head_bucket(Bucket="boto-buckets")
    expect(404, None, s3.head_bucket, Bucket="no-such-bucket-here")
    s3.put_object(Bucket="boto-buckets", Key="x", Body=b"1")
    expect(409, "BucketNotEmpty", s3.delete_bucket, Bucket="boto-buckets")
    s3.delete_object(Bucket="boto-buckets", Key="x")
    s3.delete_bucket(Bucket="boto-buckets")
    expect(404, "NoSuchBucket", s3.delete_bucket, Bucket="boto-buckets")


def test_put_get_metadata_overwrite_delete(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="a/b", Body=b"first", ContentType="text/x-a",
                      ContentDisposition='attachment; filename="b.txt"', Metadata={"Mixed-Case": "v"})
    assert r["ETag"] == '"%s"' % hashlib.md5(b"first").hexdigest()
    g = s3.get_object(Bucket=bucket, Key="a/b")
    assert g["Body"].read() == b"first"
    assert g["ContentType"] == "text/x-a"
    assert g["ContentDisposition"] == 'attachment; filename="b.txt"'
    assert g["Metadata"] == {"mixed-case": "v"}
    assert g["AcceptRanges"] == "bytes"
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"second"
    s3.delete_object(Bucket=bucket, Key="a/b")
    r = s3.delete_object(Bucket=bucket, Key="a/b")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="a/b")
    expect(404, "NoSuchBucket", s3.get_object, Bucket="no-such-bucket-here", Key="a")


# CRC32C needs botocore[crt] in boto3; aws-sdk-s3 covers it in crates/it.
@pytest.mark.parametrize("alg", ["CRC32", "SHA1", "SHA256"])
def test_checksums(s3, bucket, alg):
    data = os.urandom(100_000)
    r = s3.put_object(Bucket=bucket, Key=f"sum-{alg}", Body=data, ChecksumAlgorithm=alg)
    assert r[f"Checksum{alg}"]
    g = s3.get_object(Bucket=bucket, Key=f"sum-{alg}", ChecksumMode="ENABLED")
    assert g["Body"].read() == data
    assert g[f"Checksum{alg}"] == r[f"Checksum{alg}"]


def test_bad_digests(s3, bucket):
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    expect(400, "BadDigest", s3.put_object, Bucket=bucket, Key="bad", Body=b"data", ChecksumSHA256=wrong)
    md5_other = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    expect(400, "BadDigest", s3.put_object, Bucket=bucket, Key="bad", Body=b"data", ContentMD5=md5_other)
    expect(404, None, s3.head_object, Bucket=bucket, Key="bad")


def test_ranges_and_part_numbers(s3, bucket):
    data = bytes(range(256)) * 400  # 102400 bytes
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for rng, lo, hi in [("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=-10", len(data) - 10, len(data)),
                        ("bytes=102000-", 102000, len(data))]:
        g = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert g["ContentRange"] == f"bytes {lo}-{hi - 1}/{len(data)}"
        assert g["Body"].read() == data[lo:hi]
    expect(416, "InvalidRange", s3.get_object, Bucket=bucket, Key="r", Range="bytes=200000-")
    h = s3.head_object(Bucket=bucket, Key="r", Range="bytes=0-9")
    assert h["ContentLength"] == 10
    assert s3.get_object(Bucket=bucket, Key="r", PartNumber=1)["Body"].read() == data


def test_conditionals(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    past = datetime.now(timezone.utc) - timedelta(days=1)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    expect(412, "PreconditionFailed", s3.get_object, Bucket=bucket, Key="c", IfMatch='"0000"')
    expect(304, None, s3.get_object, Bucket=bucket, Key="c", IfNoneMatch=etag)
    expect(304, None, s3.get_object, Bucket=bucket, Key="c", IfModifiedSince=future)
    expect(412, "PreconditionFailed", s3.get_object, Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    # If-Match true + If-Unmodified-Since false: 200 (If-Match wins).
    s3.get_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)
    # If-None-Match false + If-Modified-Since true: 200.
    s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"0000"', IfModifiedSince=future)
    expect(304, None, s3.head_object, Bucket=bucket, Key="c", IfNoneMatch=etag)
    expect(412, "PreconditionFailed", s3.put_object, Bucket=bucket, Key="c", Body=b"x", IfNoneMatch="*")


def test_presigned_get_override_and_put(server, s3, bucket):
    # boto3 presigns with SigV2 query auth by default; SigV4 with signature_version="s3v4".
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p",
                                                          "ResponseContentType": "text/x-over",
                                                          "ResponseContentDisposition": "inline"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as r:
        assert r.headers["Content-Type"] == "text/x-over"
        assert r.headers["Content-Disposition"] == "inline"
        assert r.read() == b"presigned"
    v4 = make_client(server, signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p", "ResponseCacheControl": "no-store"},
                                    ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url) as r:
        assert r.headers["Cache-Control"] == "no-store"
    put = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pp"}, ExpiresIn=60)
    req = urllib.request.Request(put, data=b"uploaded via presigned PUT", method="PUT")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200
    assert s3.get_object(Bucket=bucket, Key="pp")["Body"].read() == b"uploaded via presigned PUT"


def test_identities(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"mine")
    bad = make_client(server, secret_key="wrong")
    expect(403, "SignatureDoesNotMatch", bad.get_object, Bucket=bucket, Key="o")
    unknown = make_client(server, access_key="SBUNKNOWNKEY00000000")
    expect(403, "InvalidAccessKeyId", unknown.list_buckets)
    anon = make_client(server, signature_version=UNSIGNED)
    expect(403, "AccessDenied", anon.get_object, Bucket=bucket, Key="o")
    expect(403, "AccessDenied", anon.list_objects_v2, Bucket=bucket)
    ak, sk, _ = server.create_key("boto-second")
    other = make_client(server, ak, sk)
    expect(403, "AccessDenied", other.get_object, Bucket=bucket, Key="o")
    expect(403, "AccessDenied", other.put_object, Bucket=bucket, Key="o", Body=b"theirs")
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"mine"
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.get_object(Bucket=bucket, Key="o", ExpectedBucketOwner=owner)
    expect(403, "AccessDenied", s3.get_object, Bucket=bucket, Key="o", ExpectedBucketOwner="111122223333")


def test_multipart(s3, bucket):
    parts = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(777)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")["UploadId"]
    etags = {}
    for n in (3, 1, 2):
        etags[n] = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=parts[n - 1],
                                  ChecksumAlgorithm="SHA256")["ETag"]
    done = {"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]}
    expect(400, "InvalidPartOrder", s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=up,
           MultipartUpload={"Parts": [done["Parts"][1], done["Parts"][0]]})
    expect(400, "InvalidPart", s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=up,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' % ("0" * 32)}]})
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=done)
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert r["ETag"] == '"%s-3"' % hashlib.md5(md5s).hexdigest()
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)["Body"].read() == parts[2]
    assert s3.head_object(Bucket=bucket, Key="mp")["PartsCount"] == 3
    # EntityTooSmall, abort.
    up = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=up, PartNumber=1, Body=b"a")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=up, PartNumber=2, Body=b"b")["ETag"]
    expect(400, "EntityTooSmall", s3.complete_multipart_upload, Bucket=bucket, Key="small", UploadId=up,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == ["small"]
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=up)
    expect(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key="small", UploadId=up)
    expect(404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key="small", UploadId=up, PartNumber=1, Body=b"x")
    expect(400, None, s3.upload_part, Bucket=bucket, Key="small", UploadId=up, PartNumber=10001, Body=b"x")


def test_listing_pagination_and_url_encoding(s3, bucket):
    keys = [f"dir{d}/f{f}" for d in range(5) for f in range(5)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b".")
    pages, prefixes, objects, token = 0, [], [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2, **kw)
        pages += 1
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        objects += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert prefixes == [f"dir{d}/" for d in range(5)] and objects == [] and pages == 3
    paginator = s3.get_paginator("list_objects_v2")
    flat = [o["Key"] for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 7})
            for o in page.get("Contents", [])]
    assert flat == sorted(keys)
    odd = ["sp ace", "plus+sign", "per%cent", "ünïcødé/ok", "../dots/..", "a//b"]
    for k in odd:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    # botocore asks for encoding-type=url by itself and decodes the answer.
    r = s3.list_objects_v2(Bucket=bucket)
    got = [o["Key"] for o in r["Contents"] if o["Key"] in odd]
    assert sorted(got) == sorted(odd)
    # Asked for explicitly, the keys come back encoded, as S3 does.
    r = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Prefix="sp")
    assert [o["Key"] for o in r["Contents"]] == ["sp%20ace"]
    r = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Prefix="pl")
    assert [o["Key"] for o in r["Contents"]] == ["plus%2Bsign"]
    for k in odd:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"long")
    expect(400, "KeyTooLongError", s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, Prefix="dir1/", StartAfter="dir1/f2", FetchOwner=True)
    assert [o["Key"] for o in r["Contents"]] == ["dir1/f3", "dir1/f4"]
    assert r["Contents"][0]["Owner"]["ID"]
    r = s3.list_objects(Bucket=bucket, Prefix="dir4/", Marker="dir4/f3")
    assert [o["Key"] for o in r["Contents"]] == ["dir4/f4"]


def test_delete_objects(s3, bucket):
    for k in ["d/1", "d/2", "d/3"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/1"}, {"Key": "d/2"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["d/1", "d/2", "missing"]
    assert not r.get("Errors")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}, {"Key": "k" * 1025}], "Quiet": True})
    assert not r.get("Deleted") and [e["Code"] for e in r["Errors"]] == ["KeyTooLongError"]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="d/")["KeyCount"] == 0
