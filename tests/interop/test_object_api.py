"""The rest of the object API with real clients: CopyObject, UploadPartCopy, tagging,
GetObjectAttributes, ListObjectVersions/GetBucketVersioning, and CORS (preflight with curl)."""
import hashlib
import os
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def test_copy_object_within_and_across_buckets(s3, bucket):
    other = "copy-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=other)
    data = os.urandom(3 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="application/x-src",
                  Metadata={"colour": "blue"}, Tagging="a=1&b=two")
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    # COPY (default): metadata and tags come along.
    r = s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == etag
    h = s3.head_object(Bucket=other, Key="dst")
    assert h["ContentType"] == "application/x-src" and h["Metadata"] == {"colour": "blue"}
    assert s3.get_object(Bucket=other, Key="dst")["Body"].read() == data
    assert {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=other, Key="dst")["TagSet"]} == {"a": "1", "b": "two"}
    # REPLACE: the request's metadata instead.
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   ContentType="text/plain", Metadata={"size": "big"}, TaggingDirective="REPLACE", Tagging="c=3")
    h = s3.head_object(Bucket=bucket, Key="dst2")
    assert h["ContentType"] == "text/plain" and h["Metadata"] == {"size": "big"}
    assert s3.get_object_tagging(Bucket=bucket, Key="dst2")["TagSet"] == [{"Key": "c", "Value": "3"}]
    # Copy-source conditionals.
    s3.copy_object(Bucket=bucket, Key="dst3", CopySource=f"{bucket}/src", CopySourceIfMatch=etag)
    for kwargs in ({"CopySourceIfMatch": '"0000"'}, {"CopySourceIfNoneMatch": etag}):
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="dst4", CopySource=f"{bucket}/src", **kwargs)
        assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    # Copying onto itself needs a change.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   Metadata={"colour": "red"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"colour": "red"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_upload_part_copy_of_a_large_object(s3, bucket):
    data = os.urandom(12 * MiB + 5)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    up = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    ranges = [(0, 5 * MiB - 1), (5 * MiB, 10 * MiB - 1), (10 * MiB, len(data) - 1)]
    parts = []
    for n, (a, b) in enumerate(ranges, start=1):
        r = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=n,
                                CopySource=f"{bucket}/big", CopySourceRange=f"bytes={a}-{b}")
        parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=9,
                            CopySource=f"{bucket}/big", CopySourceRange=f"bytes=0-{len(data)}")
    assert e.value.response["Error"]["Code"] == "InvalidRange"
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=up, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=bucket, Key="assembled")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    attrs = s3.get_object_attributes(Bucket=bucket, Key="assembled",
                                     ObjectAttributes=["ETag", "ObjectSize", "ObjectParts", "StorageClass"])
    assert attrs["ObjectSize"] == len(data)
    assert attrs["ObjectParts"]["TotalPartsCount"] == 3
    assert [p["Size"] for p in attrs["ObjectParts"]["Parts"]] == [5 * MiB, 5 * MiB, 2 * MiB + 5]
    assert attrs["StorageClass"] == "STANDARD"


def test_aws_cli_copies(aws, bucket, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(9 * MiB))
    aws("s3", "cp", str(src), f"s3://{bucket}/a.bin")
    # aws s3 cp between keys uses CopyObject (and UploadPartCopy above its multipart threshold).
    aws("s3", "cp", f"s3://{bucket}/a.bin", f"s3://{bucket}/b.bin")
    out = tmp_path / "b.bin"
    aws("s3", "cp", f"s3://{bucket}/b.bin", str(out))
    assert out.read_bytes() == src.read_bytes()


def test_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "project", "Value": "seed"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "project", "Value": "seed"}]
    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == etag  # tags never touch the bytes
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_versions_of_an_unversioned_bucket(s3, bucket):
    for k in ("a", "b/c", "b/d"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    r = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in r["Versions"]] == [
        ("a", "null", True), ("b/c", "null", True), ("b/d", "null", True)]
    r = s3.list_object_versions(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert r["IsTruncated"] and r["Versions"][0]["Key"] == "a"
    r = s3.list_object_versions(Bucket=bucket, Delimiter="/", KeyMarker=r["NextKeyMarker"])
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["b/"]
    assert s3.get_object(Bucket=bucket, Key="a", VersionId="null")["Body"].read() == b"a"


def _curl(*args):
    return subprocess.run(["curl", "-s", "-i", *args], capture_output=True, text=True, check=True).stdout


def test_cors_preflight_and_response_headers(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="pub.txt", Body=b"hello", ACL="public-read")
    url = f"{server.url}/{bucket}/pub.txt"
    preflight = ["-X", "OPTIONS", "-H", "Origin: https://app.example.com",
                 "-H", "Access-Control-Request-Method: GET", "-H", "Access-Control-Request-Headers: range", url]
    # No CORS configuration: refused.
    assert _curl(*preflight).startswith("HTTP/1.1 403")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "HEAD"],
        "AllowedHeaders": ["Range"], "ExposeHeaders": ["ETag", "Content-Range"], "MaxAgeSeconds": 600}]})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["https://*.example.com"]
    out = _curl(*preflight)
    assert out.startswith("HTTP/1.1 200"), out
    low = out.lower()
    assert "access-control-allow-origin: https://app.example.com" in low
    assert "access-control-allow-methods: get, head" in low
    assert "access-control-max-age: 600" in low
    # Another origin, or a method the rule does not allow: refused.
    assert _curl("-X", "OPTIONS", "-H", "Origin: https://evil.test", "-H",
                 "Access-Control-Request-Method: GET", url).startswith("HTTP/1.1 403")
    assert _curl("-X", "OPTIONS", "-H", "Origin: https://app.example.com", "-H",
                 "Access-Control-Request-Method: DELETE", url).startswith("HTTP/1.1 403")
    # The actual request gets the headers too.
    out = _curl("-H", "Origin: https://app.example.com", url).lower()
    assert "access-control-allow-origin: https://app.example.com" in out
    assert "access-control-expose-headers: etag, content-range" in out
    with pytest.raises(ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
            "AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    s3.delete_bucket_cors(Bucket=bucket)
    assert _curl(*preflight).startswith("HTTP/1.1 403")
