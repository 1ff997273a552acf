"""The access matrix: {owner, second key, anonymous} x {private, public-read, authenticated-read,
policy allow, policy deny} x {get, head, list, put, delete, get-acl, put-acl}, each cell with the
exact status and error code S3 gives. Real boto3 clients (signed with two keys, and unsigned)
against the real server."""
import json
import urllib.request
import uuid

import botocore
import botocore.config
import pytest
from botocore.exceptions import ClientError

from conftest import make_client

OPS = ["get", "head", "list", "put", "delete", "get_acl", "put_acl", "torrent"]
OK = "ok"
DENIED = "AccessDenied"

# scenario -> principal -> the ops that succeed (every other op: AccessDenied).
EXPECTED = {
    "private": {
        "owner": set(OPS),
        "other": set(),
        "anonymous": set(),
    },
    "public-read": {
        "owner": set(OPS),
        "other": {"get", "head", "list", "torrent"},
        "anonymous": {"get", "head", "list", "torrent"},
    },
    "authenticated-read": {
        "owner": set(OPS),
        "other": {"get", "head", "list", "torrent"},
        "anonymous": set(),
    },
    "policy-allow": {
        "owner": set(OPS),
        "other": {"get", "head", "list", "torrent"},
        "anonymous": {"get", "head", "list", "torrent"},
    },
    # A Deny of s3:GetObject to everyone: it binds the owner too, as in S3.
    "policy-deny": {
        "owner": set(OPS) - {"get", "head", "torrent"},
        "other": {"list"},
        "anonymous": {"list"},
    },
}


def _policy(bucket, effect, actions):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "matrix", "Effect": effect, "Principal": "*", "Action": actions,
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }],
    })


@pytest.fixture(scope="module")
def principals(server):
    ak, sk, user_id = server.create_key("matrix-other-" + uuid.uuid4().hex[:6])
    return {
        "owner": make_client(server),
        "other": make_client(server, ak, sk),
        "anonymous": make_client(server, signature_version=botocore.UNSIGNED),
        "other_user_id": user_id,
    }


@pytest.fixture(scope="module")
def scenarios(principals):
    """One bucket per scenario, each with the objects the cells read, delete and re-ACL."""
    owner = principals["owner"]
    out = {}
    for name in EXPECTED:
        bucket = f"acl-{name}-{uuid.uuid4().hex[:6]}"
        canned = name if name in ("public-read", "authenticated-read") else None
        if name == "policy-deny":
            canned = "public-read"
        owner.create_bucket(Bucket=bucket, **({"ACL": canned} if canned else {}))
        object_acl = {"ACL": canned} if canned else {}
        keys = ["obj", "acl-target"] + [f"del-{p}" for p in ("owner", "other", "anonymous")]
        for k in keys:
            owner.put_object(Bucket=bucket, Key=k, Body=b"matrix " + k.encode(), **object_acl)
        if name == "policy-allow":
            owner.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "Allow", ["s3:GetObject", "s3:ListBucket"]))
        if name == "policy-deny":
            owner.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "Deny", "s3:GetObject"))
        out[name] = (bucket, object_acl)
    return out


def _run(client, op, bucket, principal, object_acl):
    if op == "get":
        return client.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"matrix obj"
    if op == "head":
        return client.head_object(Bucket=bucket, Key="obj")["ContentLength"] == len(b"matrix obj")
    if op == "list":
        return "obj" in [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if op == "put":
        return client.put_object(Bucket=bucket, Key=f"put-{principal}", Body=b"x")["ETag"] is not None
    if op == "delete":
        client.delete_object(Bucket=bucket, Key=f"del-{principal}")
        return True
    if op == "get_acl":
        return len(client.get_object_acl(Bucket=bucket, Key="acl-target")["Grants"]) >= 1
    if op == "torrent":
        body = client.get_object_torrent(Bucket=bucket, Key="obj")["Body"].read()
        return body.startswith(b"d") and b"6:pieces" in body
    if op == "put_acl":
        client.put_object_acl(Bucket=bucket, Key="acl-target", ACL=object_acl.get("ACL", "private"))
        return True
    raise AssertionError(op)


@pytest.mark.parametrize("scenario", list(EXPECTED))
@pytest.mark.parametrize("principal", ["owner", "other", "anonymous"])
@pytest.mark.parametrize("op", OPS)
def test_matrix(principals, scenarios, scenario, principal, op):
    bucket, object_acl = scenarios[scenario]
    client = principals[principal]
    expected = OK if op in EXPECTED[scenario][principal] else DENIED
    try:
        assert _run(client, op, bucket, principal, object_acl)
        got = OK
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        code = e.response["Error"]["Code"]
        assert status == 403, f"{scenario}/{principal}/{op}: status {status} ({code})"
        # HEAD answers carry no body, so no code: the status is the whole answer.
        got = DENIED if op == "head" or code == "AccessDenied" else code
    assert got == expected, f"{scenario}/{principal}/{op}: got {got}, expected {expected}"


def test_missing_key_is_404_to_listers_and_403_to_others(principals, scenarios):
    public_bucket, _ = scenarios["public-read"]
    private_bucket, _ = scenarios["private"]
    with pytest.raises(ClientError) as e:
        principals["anonymous"].get_object(Bucket=public_bucket, Key="nope")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        principals["anonymous"].get_object(Bucket=private_bucket, Key="nope")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as e:
        principals["owner"].get_object(Bucket=private_bucket, Key="nope")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_acl_calls_answer_like_s3(principals, bucket):
    s3 = principals["owner"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [g["Grantee"] for g in grants]
    # XML grants: give the second key READ by canonical id.
    owner_id = acl["Owner"]["ID"]
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
        "Owner": {"ID": owner_id},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": owner_id}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": principals["other_user_id"]}, "Permission": "READ"},
        ]})
    assert principals["other"].get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as e:
        principals["anonymous"].get_object(Bucket=bucket, Key="k")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    # Grant headers.
    s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    assert principals["anonymous"].get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    # Unknown canonical ids and e-mail grantees are refused.
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='id="0000"')
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='emailAddress="a@example.com"')
    assert e.value.response["Error"]["Code"] == "UnresolvableGrantByEmailAddress"
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read", GrantRead='id="0000"')
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    # Bucket ACLs.
    assert [g["Permission"] for g in s3.get_bucket_acl(Bucket=bucket)["Grants"]] == ["FULL_CONTROL"]
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert len(s3.get_bucket_acl(Bucket=bucket)["Grants"]) == 2
    assert "k" in [o["Key"] for o in principals["anonymous"].list_objects(Bucket=bucket)["Contents"]]


def test_public_read_write_bucket_takes_anonymous_writes(principals):
    s3 = principals["owner"]
    bucket = "prw-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")
    principals["anonymous"].put_object(Bucket=bucket, Key="drop", Body=b"anon")
    # The bucket owner owns what anonymous callers write.
    assert s3.get_object(Bucket=bucket, Key="drop")["Body"].read() == b"anon"
    principals["anonymous"].delete_object(Bucket=bucket, Key="drop")


def test_policy_rules(principals, bucket):
    s3 = principals["owner"]
    for bad in [
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                  "Resource": f"arn:aws:s3:::{bucket}/*",
                                                  "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]},
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:Teleport",
                                                  "Resource": f"arn:aws:s3:::{bucket}/*"}]},
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                  "Resource": "arn:aws:s3:::someone-else/*"}]},
    ]:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(bad))
        assert e.value.response["Error"]["Code"] == "MalformedPolicy", bad
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
    # A policy naming the second key by its id, with a wildcard resource.
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": [principals["other_user_id"]]},
        "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/shared/*"}]})
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(policy)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    other = principals["other"]
    other.put_object(Bucket=bucket, Key="shared/a", Body=b"a")
    assert other.get_object(Bucket=bucket, Key="shared/a")["Body"].read() == b"a"
    with pytest.raises(ClientError) as e:
        other.put_object(Bucket=bucket, Key="private/a", Body=b"a")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as e:
        principals["anonymous"].get_object(Bucket=bucket, Key="shared/a")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    # Only the owner manages the policy.
    with pytest.raises(ClientError) as e:
        other.get_bucket_policy(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    s3.put_object(Bucket=bucket, Key="shared/b", Body=b"b")
    assert other.get_object(Bucket=bucket, Key="shared/b")["Body"].read() == b"b"
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError):
        other.get_object(Bucket=bucket, Key="shared/b")
    # What the second key wrote stays its own object (S3's object-writer ownership).
    assert other.get_object(Bucket=bucket, Key="shared/a")["Body"].read() == b"a"


def test_expected_bucket_owner_and_request_payer(principals, bucket):
    s3 = principals["owner"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    owner_id = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    assert s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=owner_id)["Body"].read() == b"v"
    for call in [
        lambda: s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner="1" * 64),
        lambda: s3.head_object(Bucket=bucket, Key="k", ExpectedBucketOwner="1" * 64),
        lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"v", ExpectedBucketOwner="1" * 64),
        lambda: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="1" * 64),
        lambda: s3.get_object_acl(Bucket=bucket, Key="k", ExpectedBucketOwner="1" * 64),
        lambda: s3.get_object_tagging(Bucket=bucket, Key="k", ExpectedBucketOwner="1" * 64),
        lambda: s3.delete_object(Bucket=bucket, Key="k", ExpectedBucketOwner="1" * 64),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 1
    r = s3.get_object_acl(Bucket=bucket, Key="k", RequestPayer="requester")
    assert r.get("RequestCharged") == "requester"


def test_public_object_gets_an_open_torrent(server, principals, bucket):
    s3 = principals["owner"]
    s3.put_object(Bucket=bucket, Key="pub.bin", Body=b"p" * 50_000, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv.bin", Body=b"q" * 50_000)
    with urllib.request.urlopen(f"{server.url}/{bucket}/pub.bin?torrent") as r:
        assert r.status == 200
        body = r.read()
    assert b"7:privatei1e" not in body
    assert b"sb_token" not in body
    assert f"{server.url}/announce".encode() in body
    private = s3.get_object_torrent(Bucket=bucket, Key="priv.bin")["Body"].read()
    assert b"7:privatei1e" in private and b"sb_token" in private
    for who in ("other", "anonymous"):
        with pytest.raises(ClientError) as e:
            principals[who].get_object_torrent(Bucket=bucket, Key="priv.bin")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    # The open torrent's webseed serves the bytes with no token, while the object stays public.
    req = urllib.request.Request(f"{server.url}/{bucket}/pub.bin?torrent", headers={"Accept": "application/json"})
    with urllib.request.urlopen(req) as r:
        data = json.loads(r.read())["data"]
    assert data["private"] is False
    url = data["webseed"]
    assert url.encode() in body
    with urllib.request.urlopen(url) as r:
        assert r.read() == b"p" * 50_000
    s3.put_object_acl(Bucket=bucket, Key="pub.bin", ACL="private")
    import time
    time.sleep(5.5)  # the webseed re-checks readability after its cache lifetime
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403
