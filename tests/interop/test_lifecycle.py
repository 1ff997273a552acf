"""Bucket lifecycle rules with boto3 and aws-cli against a real server: the configuration is
checked as S3 checks it and reads back, and a pass triggered on the admin listener
(`POST /lifecycle/run?as_of=…`, which runs the rules as they stand at that time) expires current
objects by days and by date, filtered by prefix, tags and size; removes noncurrent versions
(keeping the newest ones asked for); removes delete markers left alone; aborts old multipart
uploads; and an expired object's torrent stops being served like a deleted one's."""

import json
import os
import time
import urllib.error
import urllib.request

import libtorrent as lt
import pytest
from botocore.exceptions import ClientError

from conftest import Server, make_client
from test_get_object_torrent import torrent_of

DAY = 86400


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("lifecycle"), admin=True)
    yield s
    s.stop()


@pytest.fixture
def s3a(admin_server):
    return make_client(admin_server)


@pytest.fixture
def bkt(s3a, request):
    name = "lc-" + os.urandom(5).hex()
    s3a.create_bucket(Bucket=name)
    return name


def run_pass(server, days_from_now=0):
    # A minute past the day boundary: objects written during this second are due too.
    as_of = int(time.time()) + days_from_now * DAY + 60
    url = f"http://127.0.0.1:{server.admin_port}/lifecycle/run?as_of={as_of}"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST")) as r:
        return json.loads(r.read())


def keys(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def error_of(fn):
    with pytest.raises(ClientError) as e:
        fn()
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_configuration_round_trips_and_is_checked(s3a, bkt):
    assert error_of(lambda: s3a.get_bucket_lifecycle_configuration(Bucket=bkt)) == (
        404, "NoSuchLifecycleConfiguration")
    rules = [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
        {"ID": "tagged", "Status": "Disabled",
         "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "v"}]}},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2}},
        {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]
    s3a.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": rules})
    got = s3a.get_bucket_lifecycle_configuration(Bucket=bkt)["Rules"]
    assert [r["ID"] for r in got] == ["logs", "tagged", "uploads"]
    assert got[0]["Expiration"] == {"Days": 30} and got[0]["Filter"] == {"Prefix": "logs/"}
    assert got[1]["Status"] == "Disabled"
    assert got[1]["Filter"]["And"]["Tags"] == [{"Key": "k", "Value": "v"}]
    assert got[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2}
    assert got[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    bad = [
        ({"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}}, (400, "InvalidRequest")),
        ({"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}},
         (400, "InvalidArgument")),
        ({"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
          "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}, (501, "NotImplemented")),
        ({"ID": "x", "Status": "Enabled", "Filter": {"Tag": {"Key": "a", "Value": "b"}},
          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}, (400, "InvalidRequest")),
    ]
    for rule, expected in bad:
        assert error_of(lambda: s3a.put_bucket_lifecycle_configuration(
            Bucket=bkt, LifecycleConfiguration={"Rules": [rule]})) == expected, rule
    dup = [dict(rules[0]), dict(rules[0])]
    assert error_of(lambda: s3a.put_bucket_lifecycle_configuration(
        Bucket=bkt, LifecycleConfiguration={"Rules": dup})) == (400, "InvalidArgument")
    s3a.delete_bucket_lifecycle(Bucket=bkt)
    assert error_of(lambda: s3a.get_bucket_lifecycle_configuration(Bucket=bkt))[1] == "NoSuchLifecycleConfiguration"


def test_expiration_by_days_prefix_tags_and_size(admin_server, s3a, bkt):
    for k in ("logs/a", "logs/b", "keep/a"):
        s3a.put_object(Bucket=bkt, Key=k, Body=b"x" * 10)
    s3a.put_object(Bucket=bkt, Key="tagged/yes", Body=b"x", Tagging="class=tmp")
    s3a.put_object(Bucket=bkt, Key="tagged/no", Body=b"x", Tagging="class=keep")
    s3a.put_object(Bucket=bkt, Key="big/one", Body=b"x" * 5000)
    s3a.put_object(Bucket=bkt, Key="big/small", Body=b"x")
    s3a.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 2}},
        {"ID": "tmp", "Status": "Enabled", "Filter": {"Tag": {"Key": "class", "Value": "tmp"}},
         "Expiration": {"Days": 1}},
        {"ID": "big", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "big/", "ObjectSizeGreaterThan": 1000}}, "Expiration": {"Days": 1}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}},
    ]})
    run_pass(admin_server)  # nothing is due yet
    assert len(keys(s3a, bkt)) == 7
    report = run_pass(admin_server, days_from_now=1)
    assert report["expired"] >= 2
    assert keys(s3a, bkt) == ["big/small", "keep/a", "logs/a", "logs/b", "tagged/no"]
    run_pass(admin_server, days_from_now=2)
    assert keys(s3a, bkt) == ["big/small", "keep/a", "tagged/no"]


def test_expiration_by_date_ends_a_torrent(admin_server, s3a, bkt):
    s3a.put_object(Bucket=bkt, Key="old/model.bin", Body=os.urandom(300_000), ACL="public-read")
    meta = lt.bdecode(torrent_of(s3a, bkt, "old/model.bin")["Body"].read())
    url = lt.torrent_info(meta).web_seeds()[0]["url"]
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-0"})) as r:
        assert r.status == 206
    s3a.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": [
        {"ID": "date", "Status": "Enabled", "Filter": {"Prefix": "old/"},
         "Expiration": {"Date": "2020-01-01T00:00:00Z"}}]})
    run_pass(admin_server)
    assert keys(s3a, bkt) == []
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-0"}))
    assert e.value.code == 410


def test_noncurrent_versions_and_lone_delete_markers(admin_server, s3a, bkt):
    s3a.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3a.put_object(Bucket=bkt, Key="v", Body=f"{n}".encode())["VersionId"] for n in range(5)]
    s3a.put_object(Bucket=bkt, Key="gone", Body=b"x")
    s3a.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": [
        {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": "v"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}},
        {"ID": "gone", "Status": "Enabled", "Filter": {"Prefix": "gone"},
         "Expiration": {"Days": 3}, "NoncurrentVersionExpiration": {"NoncurrentDays": 5}},
        {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]})
    run_pass(admin_server)
    assert len(s3a.list_object_versions(Bucket=bkt, Prefix="v")["Versions"]) == 5
    report = run_pass(admin_server, days_from_now=2)
    assert report["noncurrent_removed"] == 2
    left = [v["VersionId"] for v in s3a.list_object_versions(Bucket=bkt, Prefix="v")["Versions"]]
    assert left == [ids[4], ids[3], ids[2]]
    # "gone" expires: a delete marker hides its version; once the version is noncurrent long
    # enough it goes too, and then the marker, alone, is removed.
    run_pass(admin_server, days_from_now=3)
    listed = s3a.list_object_versions(Bucket=bkt, Prefix="gone")
    assert len(listed["DeleteMarkers"]) == 1 and len(listed["Versions"]) == 1
    report = run_pass(admin_server, days_from_now=9)
    assert report["delete_markers_removed"] == 1
    assert len(s3a.list_object_versions(Bucket=bkt, Prefix="v")["Versions"]) == 3
    listed = s3a.list_object_versions(Bucket=bkt, Prefix="gone")
    assert "Versions" not in listed and "DeleteMarkers" not in listed


def test_old_multipart_uploads_are_aborted(admin_server, s3a, bkt):
    old = s3a.create_multipart_upload(Bucket=bkt, Key="up/a")["UploadId"]
    s3a.upload_part(Bucket=bkt, Key="up/a", UploadId=old, PartNumber=1, Body=b"part")
    s3a.create_multipart_upload(Bucket=bkt, Key="other/b")
    s3a.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": [
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "up/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    assert run_pass(admin_server)["uploads_aborted"] == 0
    assert run_pass(admin_server, days_from_now=1)["uploads_aborted"] == 1
    left = [u["Key"] for u in s3a.list_multipart_uploads(Bucket=bkt).get("Uploads", [])]
    assert left == ["other/b"]


def test_aws_cli_puts_a_configuration(admin_server, s3a, bkt, tmp_path):
    import subprocess
    cfg = tmp_path / "lc.json"
    cfg.write_text(json.dumps({"Rules": [{"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "p/"},
                                          "Expiration": {"Days": 10}}]}))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=admin_server.env["SEEDBUCKET_ROOT_ACCESS_KEY"],
               AWS_SECRET_ACCESS_KEY=admin_server.env["SEEDBUCKET_ROOT_SECRET_KEY"],
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    base = ["aws", "--endpoint-url", admin_server.url, "s3api"]
    subprocess.run([*base, "put-bucket-lifecycle-configuration", "--bucket", bkt,
                    "--lifecycle-configuration", f"file://{cfg}"], env=env, check=True, capture_output=True)
    out = subprocess.run([*base, "get-bucket-lifecycle-configuration", "--bucket", bkt], env=env,
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["Rules"][0]["Expiration"] == {"Days": 10}


def test_admin_run_needs_post(admin_server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{admin_server.admin_port}/lifecycle/run")
    assert e.value.code == 405
