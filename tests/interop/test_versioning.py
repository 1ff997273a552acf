"""Bucket versioning (embedded mode) with boto3, aws-cli and libtorrent: version ids on every
write, delete markers, reads, copies, tags and ACLs by version, ListObjectVersions paging, the
suspended state's `null` version, S3's exact errors, and a torrent per version that keeps
downloading (seeder alone, webseed alone) after its key is overwritten and stops once that
version is deleted. The last test checks that a gateway refuses versioning clearly."""

import json
import os
import urllib.error
import urllib.request

import libtorrent as lt
import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, Server, make_client
from test_get_object_torrent import torrent_of
from test_seeder import lt_download, sha, without_webseed
from test_webseed import webseed_only


def versioned(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    return bucket


def error_of(fn):
    with pytest.raises(ClientError) as e:
        fn()
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r


def test_status_round_trips_and_mfa_delete_is_refused(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    versioned(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    versioned(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    status, code, _ = error_of(lambda: s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}))
    assert (status, code) == (501, "NotImplemented")
    status, code, _ = error_of(lambda: s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Sometimes"}))
    assert (status, code) == (400, "MalformedXML")


def test_every_write_is_a_version_and_each_reads_back(s3, bucket):
    versioned(s3, bucket)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{n}".encode())["VersionId"] for n in range(3)]
    assert len(set(ids)) == 3 and "null" not in ids
    for n, v in enumerate(ids):
        got = s3.get_object(Bucket=bucket, Key="k", VersionId=v)
        assert got["Body"].read() == f"v{n}".encode() and got["VersionId"] == v
        assert s3.head_object(Bucket=bucket, Key="k", VersionId=v)["ContentLength"] == 2
    cur = s3.get_object(Bucket=bucket, Key="k")
    assert cur["Body"].read() == b"v2" and cur["VersionId"] == ids[2]
    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed] == [
        (ids[2], True), (ids[1], False), (ids[0], False)]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    # A range of an old version.
    r = s3.get_object(Bucket=bucket, Key="k", VersionId=ids[0], Range="bytes=1-1")
    assert r["Body"].read() == b"0"


def test_delete_markers(s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="d", Body=b"one")["VersionId"]
    dm = s3.delete_object(Bucket=bucket, Key="d")
    assert dm["DeleteMarker"] is True and dm["VersionId"] not in (v1, "null")
    status, code, r = error_of(lambda: s3.get_object(Bucket=bucket, Key="d"))
    assert (status, code) == (404, "NoSuchKey")
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == dm["VersionId"]
    status, _, _ = error_of(lambda: s3.head_object(Bucket=bucket, Key="d"))
    assert status == 404
    # The marker named by its id: 405, as S3 answers.
    status, code, r = error_of(lambda: s3.get_object(Bucket=bucket, Key="d", VersionId=dm["VersionId"]))
    assert (status, code) == (405, "MethodNotAllowed")
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert s3.get_object(Bucket=bucket, Key="d", VersionId=v1)["Body"].read() == b"one"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    listed = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(dm["VersionId"], True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(v1, False)]
    # Removing the marker brings the object back.
    gone = s3.delete_object(Bucket=bucket, Key="d", VersionId=dm["VersionId"])
    assert gone["DeleteMarker"] is True and gone["VersionId"] == dm["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"one"
    # A delete of a key that never existed still leaves a marker.
    assert s3.delete_object(Bucket=bucket, Key="never")["DeleteMarker"] is True


def test_deleting_versions_for_good(s3, bucket):
    versioned(s3, bucket)
    v = [s3.put_object(Bucket=bucket, Key="x", Body=f"{n}".encode())["VersionId"] for n in range(3)]
    s3.delete_object(Bucket=bucket, Key="x", VersionId=v[1])
    status, code, _ = error_of(lambda: s3.get_object(Bucket=bucket, Key="x", VersionId=v[1]))
    assert (status, code) == (404, "NoSuchVersion")
    # Deleting the current version makes the previous one current again.
    s3.delete_object(Bucket=bucket, Key="x", VersionId=v[2])
    cur = s3.get_object(Bucket=bucket, Key="x")
    assert cur["Body"].read() == b"0" and cur["VersionId"] == v[0]
    assert [x["IsLatest"] for x in s3.list_object_versions(Bucket=bucket)["Versions"]] == [True]
    # A version that is not there: 204 with the id echoed, as S3 answers.
    missing = "0" * 32
    r = s3.delete_object(Bucket=bucket, Key="x", VersionId=missing)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204 and r["VersionId"] == missing
    # Malformed ids are 400.
    status, code, _ = error_of(lambda: s3.get_object(Bucket=bucket, Key="x", VersionId="not-an-id"))
    assert (status, code) == (400, "InvalidArgument")
    # The bucket cannot go while any version or marker remains.
    s3.delete_object(Bucket=bucket, Key="x")
    status, code, _ = error_of(lambda: s3.delete_bucket(Bucket=bucket))
    assert (status, code) == (409, "BucketNotEmpty")
    listed = s3.list_object_versions(Bucket=bucket)
    everything = [{"Key": x["Key"], "VersionId": x["VersionId"]}
                  for x in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": everything})
    assert len(out["Deleted"]) == 2 and "Errors" not in out
    s3.delete_bucket(Bucket=bucket)


def test_delete_objects_with_and_without_versions(s3, bucket):
    versioned(s3, bucket)
    a1 = s3.put_object(Bucket=bucket, Key="a", Body=b"a1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="a", Body=b"a2")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "VersionId": a1}, {"Key": "b"}, {"Key": "c", "VersionId": "bogus"}]})
    by_key = {d["Key"]: d for d in out["Deleted"]}
    assert by_key["a"]["VersionId"] == a1 and "DeleteMarker" not in by_key["a"]
    assert by_key["b"]["DeleteMarker"] is True and by_key["b"]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("c", "InvalidArgument")]
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == ["a", "b"]


def test_suspended_buckets_write_the_null_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="s", Body=b"before")  # the null version of before
    versioned(s3, bucket)
    kept = s3.put_object(Bucket=bucket, Key="s", Body=b"versioned")["VersionId"]
    versioned(s3, bucket, "Suspended")
    r = s3.put_object(Bucket=bucket, Key="s", Body=b"null one")
    assert r["VersionId"] == "null"
    s3.put_object(Bucket=bucket, Key="s", Body=b"null two")  # replaces the null version
    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed] == [("null", True), (kept, False)]
    assert s3.get_object(Bucket=bucket, Key="s", VersionId="null")["Body"].read() == b"null two"
    assert s3.get_object(Bucket=bucket, Key="s", VersionId=kept)["Body"].read() == b"versioned"
    dm = s3.delete_object(Bucket=bucket, Key="s")
    assert dm["DeleteMarker"] is True and dm["VersionId"] == "null"
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [kept]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == ["null"]


def test_listing_pages_through_keys_and_versions(s3, bucket):
    versioned(s3, bucket)
    made = []
    for key in ("a", "b/1", "b/2", "c"):
        for n in range(2):
            made.append((key, s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"]))
    expected = []
    for key in ("a", "b/1", "b/2", "c"):
        expected += [(k, v) for k, v in reversed(made) if k == key]
    seen, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=3, **kw)
        seen += [(v["Key"], v["VersionId"]) for v in page["Versions"]]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert seen == expected
    page = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    assert sorted({v["Key"] for v in page["Versions"]}) == ["a", "c"]
    page = s3.list_object_versions(Bucket=bucket, Prefix="b/", KeyMarker="b/1")
    assert {v["Key"] for v in page["Versions"]} == {"b/2"}
    status, code, _ = error_of(lambda: s3.list_object_versions(Bucket=bucket, VersionIdMarker=made[0][1]))
    assert (status, code) == (400, "InvalidArgument")


def test_copies_restore_old_versions_and_multipart_makes_one(s3, bucket):
    versioned(s3, bucket)
    old = s3.put_object(Bucket=bucket, Key="r", Body=b"old bytes")["VersionId"]
    s3.put_object(Bucket=bucket, Key="r", Body=b"new bytes")
    # Copying an old version onto its own key restores it as a new version.
    c = s3.copy_object(Bucket=bucket, Key="r", CopySource={"Bucket": bucket, "Key": "r", "VersionId": old})
    assert c["CopySourceVersionId"] == old and c["VersionId"] not in (old, "null")
    assert s3.get_object(Bucket=bucket, Key="r")["Body"].read() == b"old bytes"
    assert len(s3.list_object_versions(Bucket=bucket)["Versions"]) == 3
    # Multipart: a part copied from an old version; the completed upload is a version.
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    p = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "r", "VersionId": old})
    assert p["CopySourceVersionId"] == old
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"ETag": p["CopyPartResult"]["ETag"], "PartNumber": 1}]})
    assert done["VersionId"] not in (None, "null")
    assert s3.get_object(Bucket=bucket, Key="mp", VersionId=done["VersionId"])["Body"].read() == b"old bytes"


def test_tags_and_acls_by_version(server, s3, bucket):
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="t", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="t", Body=b"2")["VersionId"]
    s3.put_object_tagging(Bucket=bucket, Key="t", VersionId=v1, Tagging={"TagSet": [{"Key": "age", "Value": "old"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t", VersionId=v1)["TagSet"] == [{"Key": "age", "Value": "old"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    s3.put_object_acl(Bucket=bucket, Key="t", VersionId=v1, ACL="public-read")
    anon = urllib.request.urlopen(f"{server.url}/{bucket}/t?versionId={v1}")
    assert anon.read() == b"1"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/{bucket}/t?versionId={v2}")
    assert e.value.code == 403
    attrs = s3.get_object_attributes(Bucket=bucket, Key="t", VersionId=v1, ObjectAttributes=["ObjectSize"])
    assert attrs["ObjectSize"] == 1 and attrs["VersionId"] == v1


def test_aws_cli_lists_versions(s3, bucket, aws):
    versioned(s3, bucket)
    for body in (b"1", b"22"):
        s3.put_object(Bucket=bucket, Key="cli", Body=body)
    out = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert [v["Size"] for v in out["Versions"]] == [2, 1]
    assert "Enabled" in aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout


def test_a_versions_torrent_outlives_overwrites_until_the_version_is_deleted(s3, bucket, tmp_path):
    versioned(s3, bucket)
    data = os.urandom(2_000_000 + 7)
    v1 = s3.put_object(Bucket=bucket, Key="model.bin", Body=data, ACL="public-read")["VersionId"]

    def torrent(fmt, version, accept=None):
        def add(request, **_):
            request.url += f"&versionId={version}"
        s3.meta.events.register("before-sign.s3.GetObjectTorrent", add)
        try:
            return torrent_of(s3, bucket, "model.bin", fmt, accept)["Body"].read()
        finally:
            s3.meta.events.unregister("before-sign.s3.GetObjectTorrent", add)

    env = json.loads(torrent("v1", v1, "application/json"))["data"]
    assert env["version_id"] == v1 and f"versionId={v1}" in env["torrent_url"]
    metas = {fmt: lt.bdecode(torrent(fmt, v1)) for fmt in ("v1", "v2")}
    assert v1.encode() in metas["v1"][b"comment"]
    # The key is overwritten (and its new version has a torrent of its own).
    s3.put_object(Bucket=bucket, Key="model.bin", Body=b"something else", ACL="public-read")
    for fmt, meta in metas.items():
        out = lt_download(tmp_path, without_webseed(meta), name=f"seeder-{fmt}")
        assert sha((out / "model.bin").read_bytes()) == sha(data)
        out = lt_download(tmp_path, webseed_only(meta), name=f"webseed-{fmt}")
        assert sha((out / "model.bin").read_bytes()) == sha(data)
    # Deleting that version ends its torrent: the webseed answers 410 Gone.
    url = lt.torrent_info(metas["v1"]).web_seeds()[0]["url"]
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-9"})) as r:
        assert r.read() == data[:10]
    s3.delete_object(Bucket=bucket, Key="model.bin", VersionId=v1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-9"}))
    assert e.value.code == 410
    status, code, _ = error_of(lambda: torrent("v1", v1))
    assert (status, code) == (404, "NoSuchVersion")


def test_gateway_refuses_versioning(tmp_path):
    for d in ("backend", "gw"):
        (tmp_path / d).mkdir()
    backend = Server(tmp_path / "backend")
    gw = Server(tmp_path / "gw", backend=backend)
    try:
        s3 = make_client(gw)
        s3.create_bucket(Bucket="gwver")
        status, code, _ = error_of(lambda: versioned(s3, "gwver"))
        assert (status, code) == (501, "NotImplemented")
        s3.put_object(Bucket="gwver", Key="k", Body=b"x")
        assert s3.get_object(Bucket="gwver", Key="k", VersionId="null")["Body"].read() == b"x"
        status, code, _ = error_of(lambda: s3.get_object(Bucket="gwver", Key="k", VersionId="1" * 32))
        assert (status, code) == (404, "NoSuchVersion")
    finally:
        gw.stop()
        backend.stop()


def clean_env(tmp_path):
    """The environment without the machine's AWS_* settings (rclone's SDK refuses a custom CA
    bundle with its own transport) and with a HOME of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    return env


def test_rclone_lists_and_reads_old_versions(server, s3, bucket, tmp_path):
    import shutil
    import subprocess
    assert shutil.which("rclone"), "rclone is required (scripts/test.sh installs it)"
    versioned(s3, bucket)
    for body in (b"first", b"second!", b"third!!!"):
        s3.put_object(Bucket=bucket, Key="doc.txt", Body=body)
    env = clean_env(tmp_path)
    env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_SB_TYPE="s3", RCLONE_CONFIG_SB_PROVIDER="Other",
               RCLONE_CONFIG_SB_ACCESS_KEY_ID=ACCESS_KEY, RCLONE_CONFIG_SB_SECRET_ACCESS_KEY=SECRET_KEY,
               RCLONE_CONFIG_SB_ENDPOINT=server.url, RCLONE_CONFIG_SB_FORCE_PATH_STYLE="true",
               RCLONE_CONFIG_SB_REGION="us-east-1")

    def rclone(*args):
        p = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert rclone("lsf", f"sb:{bucket}").split() == ["doc.txt"]
    listed = rclone("lsf", "--s3-versions", f"sb:{bucket}").split()
    assert len(listed) == 3 and "doc.txt" in listed
    old = sorted(n for n in listed if n != "doc.txt")
    # rclone names a version by its time (doc-v2026-...txt) and reads it with its versionId.
    assert rclone("cat", "--s3-versions", f"sb:{bucket}/{old[0]}") == "first"
    assert rclone("cat", "--s3-versions", f"sb:{bucket}/{old[1]}") == "second!"
    assert rclone("cat", f"sb:{bucket}/doc.txt") == "third!!!"


def test_s3cmd_works_against_a_versioned_bucket(server, s3, bucket, tmp_path):
    import shutil
    import subprocess
    assert shutil.which("s3cmd"), "s3cmd is required (scripts/test.sh installs it)"
    versioned(s3, bucket)
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(f"[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\nhost_base = {host}\n"
                   f"host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n")
    env = clean_env(tmp_path)

    def s3cmd(*args):
        p = subprocess.run(["s3cmd", "-c", str(cfg), *args], env=env, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    src = tmp_path / "up.bin"
    for body in (b"one", b"two"):
        src.write_bytes(body)
        s3cmd("put", str(src), f"s3://{bucket}/up.bin")
    assert "up.bin" in s3cmd("ls", f"s3://{bucket}/")
    s3cmd("get", "--force", f"s3://{bucket}/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == b"two"
    s3cmd("del", f"s3://{bucket}/up.bin")
    assert "up.bin" not in s3cmd("ls", f"s3://{bucket}/")
    # The delete left a marker; both versions are still there.
    listed = s3.list_object_versions(Bucket=bucket)
    assert len(listed["Versions"]) == 2 and len(listed["DeleteMarkers"]) == 1
