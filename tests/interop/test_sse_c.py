"""SSE-C with boto3 and aws-cli against the real server: round trips, wrong and missing keys,
ranges on encrypted data, multipart and copies, the torrent refusal, and proof that the bytes
on disk are not the plaintext."""
import base64
import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

MiB = 1024 * 1024
KEY = bytes(range(32))
OTHER_KEY = bytes(reversed(range(32)))


def sse(key=KEY, prefix=""):
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def _code(e):
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def test_round_trip_keys_and_ranges(s3, bucket):
    # A recognisable plaintext, so the store can be searched for it.
    data = (b"SEEDBUCKET-PLAINTEXT-MARKER" * 50000)[: 1 * MiB + 321]
    put = s3.put_object(Bucket=bucket, Key="secret", Body=data, **sse())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY).digest()).decode()
    got = s3.get_object(Bucket=bucket, Key="secret", **sse())
    assert got["Body"].read() == data and got["SSECustomerAlgorithm"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="secret", **sse())["ContentLength"] == len(data)
    for start, end in [(0, 0), (65535, 65537), (100, 200_000), (len(data) - 10, len(data) - 1)]:
        r = s3.get_object(Bucket=bucket, Key="secret", Range=f"bytes={start}-{end}", **sse())
        assert r["Body"].read() == data[start:end + 1]
        assert r["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    # No key: 400; a wrong key: 403; a key for a plain object: 400.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret")
    assert _code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret", **sse(OTHER_KEY))
    assert _code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="secret", **sse(OTHER_KEY))
    assert _code(e)[0] == 403
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **sse())
    assert _code(e) == (400, "InvalidRequest")
    # A key whose MD5 does not match is refused before anything is stored.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=base64.b64encode(KEY).decode(), SSECustomerKeyMD5=base64.b64encode(b"0" * 16).decode())
    assert _code(e)[0] == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert _code(e)[0] == 404
    # No torrent for SSE-C objects.
    with pytest.raises(ClientError) as e:
        s3.get_object_torrent(Bucket=bucket, Key="secret")
    assert _code(e) == (400, "InvalidRequest")


def test_bytes_at_rest_are_not_the_plaintext(server, s3, bucket):
    marker = b"SSE-C-AT-REST-CHECK-" + os.urandom(8).hex().encode()
    s3.put_object(Bucket=bucket, Key="big", Body=marker * 20000, **sse())  # in a blob file
    s3.put_object(Bucket=bucket, Key="small", Body=marker, **sse())  # inline in the database
    for f in Path(server.data_dir).rglob("*"):
        if f.is_file():
            assert marker not in f.read_bytes(), f"plaintext found in {f}"
    assert s3.get_object(Bucket=bucket, Key="small", **sse())["Body"].read() == marker


def test_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"", **sse())
    r = s3.get_object(Bucket=bucket, Key="empty", **sse())
    assert r["ContentLength"] == 0 and r["Body"].read() == b""


def test_multipart_with_customer_key(s3, bucket):
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB + 7), os.urandom(1234)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse())["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=parts_data[0])
    assert _code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=parts_data[0], **sse(OTHER_KEY))
    assert _code(e) == (400, "InvalidRequest")
    parts = []
    for n, d in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=d, **sse())
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    whole = b"".join(parts_data)
    assert s3.get_object(Bucket=bucket, Key="mp", **sse())["Body"].read() == whole
    # A range across the first part boundary, and a part by number.
    a, b = 5 * MiB - 100, 5 * MiB + 100
    r = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={a}-{b}", **sse())
    assert r["Body"].read() == whole[a:b + 1]
    r = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse())
    assert r["Body"].read() == parts_data[1]


def test_copies_between_keys_and_modes(s3, bucket):
    data = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="enc", Body=data, **sse())
    # Encrypted -> plain.
    s3.copy_object(Bucket=bucket, Key="dec", CopySource=f"{bucket}/enc", **sse(prefix="CopySource"))
    assert s3.get_object(Bucket=bucket, Key="dec")["Body"].read() == data
    # Encrypted -> encrypted under another key (a key rotation, in place).
    s3.copy_object(Bucket=bucket, Key="enc", CopySource=f"{bucket}/enc", **sse(prefix="CopySource"),
                   **sse(OTHER_KEY))
    assert s3.get_object(Bucket=bucket, Key="enc", **sse(OTHER_KEY))["Body"].read() == data
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="enc", **sse())
    assert _code(e) == (403, "AccessDenied")
    # The source key is required to read an encrypted source.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/enc")
    assert _code(e) == (400, "InvalidRequest")
    # Plain -> encrypted, and a part copied out of an encrypted object.
    s3.copy_object(Bucket=bucket, Key="enc2", CopySource=f"{bucket}/dec", **sse())
    up = s3.create_multipart_upload(Bucket=bucket, Key="mpc")["UploadId"]
    r = s3.upload_part_copy(Bucket=bucket, Key="mpc", UploadId=up, PartNumber=1, CopySource=f"{bucket}/enc2",
                            CopySourceRange="bytes=1000-199999", **sse(prefix="CopySource"))
    s3.complete_multipart_upload(Bucket=bucket, Key="mpc", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="mpc")["Body"].read() == data[1000:200000]


def test_aws_cli_sse_c(aws, bucket, tmp_path):
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(KEY)
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(2 * MiB))
    aws("s3", "cp", str(src), f"s3://{bucket}/f.bin", "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}")
    out = tmp_path / "out.bin"
    assert aws("s3", "cp", f"s3://{bucket}/f.bin", str(out), check=False).returncode != 0
    aws("s3", "cp", f"s3://{bucket}/f.bin", str(out), "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}")
    assert out.read_bytes() == src.read_bytes()
