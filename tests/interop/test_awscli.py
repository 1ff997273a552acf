"""aws-cli (the real CLI) against the server: the high-level s3 commands and s3api calls."""
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_mb_cp_ls_rm_rb(aws, tmp_path):
    name = "cli-" + uuid.uuid4().hex[:10]
    aws("s3", "mb", f"s3://{name}")
    small = tmp_path / "small.txt"
    small.write_text("hello from aws-cli\n")
    aws("s3", "cp", str(small), f"s3://{name}/docs/small.txt")
    ls = aws("s3", "ls", f"s3://{name}/docs/").stdout
    assert "small.txt" in ls
    rec = aws("s3", "ls", f"s3://{name}", "--recursive").stdout
    assert "docs/small.txt" in rec
    back = tmp_path / "back.txt"
    aws("s3", "cp", f"s3://{name}/docs/small.txt", str(back))
    assert back.read_text() == "hello from aws-cli\n"
    p = aws("s3", "rb", f"s3://{name}", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr
    aws("s3", "rm", f"s3://{name}/docs/small.txt")
    aws("s3", "rb", f"s3://{name}")
    p = aws("s3", "ls", f"s3://{name}", check=False)
    assert p.returncode != 0 and "NoSuchBucket" in p.stderr


def test_multipart_cp_40mib_with_default_checksums(aws, bucket, tmp_path):
    src = tmp_path / "forty.bin"
    src.write_bytes(os.urandom(40 << 20))
    aws("s3", "cp", str(src), f"s3://{bucket}/forty.bin")
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "forty.bin").stdout)
    assert head["ContentLength"] == 40 << 20
    assert head["ETag"].endswith('-5"')  # 8 MiB parts by default
    dst = tmp_path / "forty.back"
    aws("s3", "cp", f"s3://{bucket}/forty.bin", str(dst))
    assert sha256_file(src) == sha256_file(dst)


def test_sync_both_ways(aws, bucket, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "a" / "mid.txt").write_text("mid")
    (tree / "a" / "b" / "deep name.txt").write_text("deep")
    aws("s3", "sync", str(tree), f"s3://{bucket}/tree")
    out = tmp_path / "out"
    aws("s3", "sync", f"s3://{bucket}/tree", str(out))
    # Recursive removal goes through DeleteObjects.
    aws("s3", "rm", f"s3://{bucket}/tree/a", "--recursive")
    left = aws("s3", "ls", f"s3://{bucket}/tree/", "--recursive").stdout
    assert "top.txt" in left and "mid.txt" not in left and "deep name.txt" not in left
    assert (out / "a" / "b" / "deep name.txt").read_text() == "deep"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == [
        "a/b/deep name.txt", "a/mid.txt", "top.txt"]


def test_presign_and_expiry(aws, bucket, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("presigned body")
    aws("s3", "cp", str(f), f"s3://{bucket}/p.txt")
    url = aws("s3", "presign", f"s3://{bucket}/p.txt", "--expires-in", "300").stdout.strip()
    with urllib.request.urlopen(url) as r:
        assert r.read() == b"presigned body"
    short = aws("s3", "presign", f"s3://{bucket}/p.txt", "--expires-in", "1").stdout.strip()
    time.sleep(2.2)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(short)
    assert e.value.code == 403


def test_s3api_calls_and_errors(aws, bucket, tmp_path):
    body = tmp_path / "b.bin"
    body.write_bytes(b"x" * 1000)
    put = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "k/one", "--body", str(body),
                         "--content-type", "application/x-one", "--metadata", "owner=team").stdout)
    assert put["ETag"].strip('"') == hashlib.md5(b"x" * 1000).hexdigest()
    out = tmp_path / "out.bin"
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "k/one", "--range", "bytes=0-9", str(out)).stdout)
    assert got["ContentRange"] == "bytes 0-9/1000" and out.read_bytes() == b"x" * 10
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "k/one").stdout)
    assert head["ContentType"] == "application/x-one" and head["Metadata"] == {"owner": "team"}
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "k/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["k/one"]
    aws("s3api", "head-bucket", "--bucket", bucket)
    loc = json.loads(aws("s3api", "get-bucket-location", "--bucket", bucket).stdout)
    assert loc.get("LocationConstraint") in (None, "")
    # Multipart by hand.
    up = json.loads(aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key", "mp").stdout)
    part = tmp_path / "part"
    part.write_bytes(b"p" * (5 << 20))
    etags = []
    for n in (1, 2):
        r = json.loads(aws("s3api", "upload-part", "--bucket", bucket, "--key", "mp", "--upload-id", up["UploadId"],
                           "--part-number", str(n), "--body", str(part)).stdout)
        etags.append(r["ETag"])
    parts = json.loads(aws("s3api", "list-parts", "--bucket", bucket, "--key", "mp", "--upload-id", up["UploadId"]).stdout)
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2]
    uploads = json.loads(aws("s3api", "list-multipart-uploads", "--bucket", bucket).stdout)
    assert [u["Key"] for u in uploads["Uploads"]] == ["mp"]
    spec = tmp_path / "parts.json"
    spec.write_text(json.dumps({"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]}))
    done = json.loads(aws("s3api", "complete-multipart-upload", "--bucket", bucket, "--key", "mp", "--upload-id",
                          up["UploadId"], "--multipart-upload", f"file://{spec}").stdout)
    assert done["ETag"].endswith('-2"')
    up2 = json.loads(aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key", "gone").stdout)
    aws("s3api", "abort-multipart-upload", "--bucket", bucket, "--key", "gone", "--upload-id", up2["UploadId"])
    p = aws("s3api", "list-parts", "--bucket", bucket, "--key", "gone", "--upload-id", up2["UploadId"], check=False)
    assert p.returncode != 0 and "NoSuchUpload" in p.stderr
    aws("s3api", "delete-object", "--bucket", bucket, "--key", "k/one")
    p = aws("s3api", "get-object", "--bucket", bucket, "--key", "k/one", str(out), check=False)
    assert p.returncode != 0 and "NoSuchKey" in p.stderr
    p = aws("s3api", "create-bucket", "--bucket", "Not_Valid", check=False)
    assert p.returncode != 0 and "InvalidBucketName" in p.stderr


@pytest.mark.large
def test_one_gib_round_trip(aws, bucket, tmp_path):
    src = tmp_path / "gib.bin"
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(1024):
            f.write(block[i:] + block[:i])
    aws("s3", "cp", str(src), f"s3://{bucket}/gib.bin")
    dst = tmp_path / "gib.back"
    aws("s3", "cp", f"s3://{bucket}/gib.bin", str(dst))
    assert sha256_file(src) == sha256_file(dst)
    src.unlink()
    dst.unlink()
