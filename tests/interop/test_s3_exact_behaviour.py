"""S3's exact behaviour where clients notice it. Error bodies as clients read them: every XML
error carries S3's message (aws-cli prints it; without one it prints "Unknown"), the request id
of the x-amz-request-id header, and the resource; the seed's JSON envelope carries the same
message (test_get_object_torrent.py). An object stored without a Content-Type answers binary/octet-stream."""

import http.client
import json
import urllib.request
import urllib.error
import xml.etree.ElementTree as ET

import botocore.exceptions
import pytest

from conftest import make_client


def error_of(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response


@pytest.mark.parametrize("case", ["bucket-exists", "no-such-key", "no-such-bucket", "no-such-upload",
                                  "invalid-part", "access-denied"])
def test_errors_carry_message_request_id_and_resource(server, s3, bucket, case):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    calls = {
        "bucket-exists": (lambda: s3.create_bucket(Bucket=bucket), "BucketAlreadyOwnedByYou", 409,
                          "Your previous request to create the named bucket succeeded and you already own it."),
        "no-such-key": (lambda: s3.get_object(Bucket=bucket, Key="missing"), "NoSuchKey", 404,
                        "The specified key does not exist."),
        "no-such-bucket": (lambda: s3.list_objects_v2(Bucket=bucket + "-none"), "NoSuchBucket", 404,
                           "The specified bucket does not exist"),
        "no-such-upload": (lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId="nope"), "NoSuchUpload", 404,
                           None),
        "invalid-part": (lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"],
            MultipartUpload={"Parts": [{"ETag": '"0123456789abcdef0123456789abcdef"', "PartNumber": 1}]}),
            "InvalidPart", 400, None),
        "access-denied": (lambda: make_client(server, access_key="AKIDNOTAKEY000000000",
                                              secret_key="s" * 40).list_objects_v2(Bucket=bucket),
                          "InvalidAccessKeyId", 403,
                          "The AWS Access Key Id you provided does not exist in our records."),
    }
    call, code, status, message = calls[case]
    r = error_of(call)
    assert r["Error"]["Code"] == code
    assert r["ResponseMetadata"]["HTTPStatusCode"] == status
    got = r["Error"].get("Message", "")
    assert got and got != code, f"{code}: no message: {r['Error']}"
    if message:
        assert got == message
    header_id = r["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    assert r["ResponseMetadata"]["RequestId"] == header_id


def test_raw_error_body_has_every_field(server, bucket):
    """Read without an SDK: the XML itself, anonymous, as curl would see it."""
    url = f"{server.url}/{bucket}/no/such%20key"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    body = e.value.read().decode()
    root = ET.fromstring(body)
    fields = {child.tag: child.text for child in root}
    assert fields["Code"] == "AccessDenied"
    assert fields["Message"] == "Access Denied"
    assert fields["RequestId"] == e.value.headers["x-amz-request-id"]
    assert fields["Resource"] == f"/{bucket}/no/such key"
    assert int(e.value.headers["Content-Length"]) == len(body.encode())


def test_aws_cli_prints_the_message_not_unknown(aws, bucket):
    p = aws("s3api", "create-bucket", "--bucket", bucket, check=False)
    assert p.returncode != 0
    assert "BucketAlreadyOwnedByYou" in p.stderr
    assert "Unknown" not in p.stderr, p.stderr
    assert "already own it" in p.stderr


def test_an_object_without_content_type_answers_binary_octet_stream(server, s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "raw"}, ExpiresIn=300)
    # http.client sends no Content-Type unless told to (urllib would add a form type).
    host, path = url.removeprefix("http://").split("/", 1)
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.putrequest("PUT", "/" + path, skip_accept_encoding=True)
    conn.putheader("Content-Length", "3")
    conn.endheaders(b"abc")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    h = s3.head_object(Bucket=bucket, Key="raw")
    assert h["ContentType"] == "binary/octet-stream"
    assert s3.get_object(Bucket=bucket, Key="raw")["ContentType"] == "binary/octet-stream"
    # A stored type and a response-content-type override still win.
    s3.put_object(Bucket=bucket, Key="typed", Body=b"x", ContentType="text/plain")
    assert s3.head_object(Bucket=bucket, Key="typed")["ContentType"] == "text/plain"
    got = s3.get_object(Bucket=bucket, Key="raw", ResponseContentType="image/png")
    assert got["ContentType"] == "image/png"


def test_list_buckets_pages_with_max_buckets_continuation_token_and_prefix(s3):
    import uuid
    tag = "lb-" + uuid.uuid4().hex[:8]
    names = sorted(f"{tag}-{i}" for i in range(5))
    for n in names:
        s3.create_bucket(Bucket=n)
    seen, token = [], None
    while True:
        kw = {"MaxBuckets": 2, "Prefix": tag}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_buckets(**kw)
        assert page.get("Prefix") == tag
        seen += [b["Name"] for b in page["Buckets"]]
        assert len(page["Buckets"]) <= 2
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == names
    assert [b["Name"] for b in s3.list_buckets(Prefix=tag)["Buckets"]] == names
    r = error_of(lambda: s3.list_buckets(MaxBuckets=10001))
    assert r["Error"]["Code"] == "InvalidArgument"


def test_list_objects_with_an_empty_delimiter_lists_as_without_one(s3, bucket):
    for k in ("a/1", "a/2", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    for call in (s3.list_objects, s3.list_objects_v2):
        r = call(Bucket=bucket, Delimiter="")
        assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2", "b"]
        assert not r.get("CommonPrefixes")


def test_kms_encryption_is_refused_not_stored_in_plaintext(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="kms", Body=b"secret", ServerSideEncryption="aws:kms"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="kms", ServerSideEncryption="aws:kms"),
        lambda: s3.copy_object(Bucket=bucket, Key="kms", CopySource={"Bucket": bucket, "Key": "src"},
                               ServerSideEncryption="aws:kms:dsse"),
    ):
        r = error_of(call)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert r["Error"]["Code"] == "InvalidArgument"
        assert "KMS" in r["Error"]["Message"]
    assert "kms" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def signed(server, method, path, headers=None, body=b""):
    """A SigV4-signed request sent as given (no SDK validation or header rewriting):
    returns (status, headers, body text)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import ACCESS_KEY, SECRET_KEY
    req = AWSRequest(method=method, url=f"{server.url}/{path}", data=body, headers=headers or {})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    return raw(server, method, path, dict(req.prepare().headers), body)


def raw(server, method, path, headers, body=b""):
    host = server.url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.putrequest(method, "/" + path, skip_accept_encoding=True, skip_host="Host" in headers)
    for k, v in headers.items():
        conn.putheader(k, v)
    if "Content-Length" not in headers:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read().decode(errors="replace")


def xml_fields(body):
    return {child.tag: child.text for child in ET.fromstring(body)}


def test_a_retried_complete_multipart_upload_gets_the_same_answer(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 1024)["ETag"]
    parts = {"Parts": [{"ETag": part, "PartNumber": 1}]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    assert again["ETag"] == first["ETag"] and again["Key"] == "mp"
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p" * 1024
    # Another key, or the key after something else replaced that object: the upload is gone.
    r = error_of(lambda: s3.complete_multipart_upload(Bucket=bucket, Key="other", UploadId=up,
                                                      MultipartUpload=parts))
    assert r["Error"]["Code"] == "NoSuchUpload"
    s3.put_object(Bucket=bucket, Key="mp", Body=b"replaced")
    r = error_of(lambda: s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                                      MultipartUpload=parts))
    assert r["Error"]["Code"] == "NoSuchUpload"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_part_number_the_object_does_not_have_is_invalid_part_number(s3, bucket):
    s3.put_object(Bucket=bucket, Key="single", Body=b"0123456789")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"0123456789"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"a" * (5 << 20))["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=b"b")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]})
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == b"b"
    for key, n in (("single", 2), ("mp", 3)):
        r = error_of(lambda: s3.get_object(Bucket=bucket, Key=key, PartNumber=n))
        assert (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]) == (400, "InvalidPartNumber")
        assert r["Error"]["Message"] == "The requested partnumber is not satisfiable"
        r = error_of(lambda: s3.head_object(Bucket=bucket, Key=key, PartNumber=n))
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_empty_content_md5_is_invalid_digest(server, s3, bucket):
    status, _, body = signed(server, "PUT", f"{bucket}/k", {"Content-MD5": ""}, b"abc")
    assert status == 400, body
    assert xml_fields(body)["Code"] == "InvalidDigest"
    r = error_of(lambda: s3.head_object(Bucket=bucket, Key="k"))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 404, "nothing may be stored"


def test_an_empty_authorization_header_is_access_denied(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"p")
    for method, body in (("GET", b""), ("PUT", b"abc")):
        status, _, text = raw(server, method, f"{bucket}/private", {"Authorization": ""}, body)
        assert status == 403, text
        assert xml_fields(text)["Code"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"p"


def test_aws_chunked_is_not_stored_as_the_objects_content_encoding(server, s3, bucket):
    for key, sent, kept in (("gz", "aws-chunked,gzip", "gzip"), ("plain", "aws-chunked", None)):
        status, _, text = signed(server, "PUT", f"{bucket}/{key}", {"Content-Encoding": sent}, b"abc")
        assert status == 200, text
        assert s3.head_object(Bucket=bucket, Key=key).get("ContentEncoding") == kept
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"abc"


def test_rfc_2047_user_metadata_round_trips(s3, bucket):
    # boto3 refuses non-ASCII metadata; users send it encoded (RFC 2047), and it comes back as sent.
    encoded = "=?UTF-8?B?R3LDvMOfZQ==?="
    s3.put_object(Bucket=bucket, Key="m", Body=b"1", Metadata={"name": encoded})
    assert s3.head_object(Bucket=bucket, Key="m")["Metadata"] == {"name": encoded}
    assert s3.get_object(Bucket=bucket, Key="m")["Metadata"] == {"name": encoded}


def test_errors_name_the_key_and_the_bucket(server, s3, bucket):
    r = error_of(lambda: s3.get_object(Bucket=bucket, Key="dir/no such key"))
    assert r["Error"]["Key"] == "dir/no such key"
    assert "BucketName" not in r["Error"]
    r = error_of(lambda: s3.list_objects_v2(Bucket=bucket + "-missing"))
    assert r["Error"]["Code"] == "NoSuchBucket"
    assert r["Error"]["BucketName"] == bucket + "-missing"
    r = error_of(lambda: s3.create_bucket(Bucket=bucket))
    assert r["Error"]["BucketName"] == bucket


def test_put_acl_and_tagging_keep_last_modified(s3, bucket):
    import time
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    before = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    time.sleep(1.1)
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert s3.head_object(Bucket=bucket, Key="k")["LastModified"] == before


def test_create_bucket_of_another_owner_is_bucket_already_exists(server, bucket):
    import uuid
    access, secret, _ = server.create_key("other-" + uuid.uuid4().hex[:6])
    other = make_client(server, access_key=access, secret_key=secret)
    r = error_of(lambda: other.create_bucket(Bucket=bucket))
    assert (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]) == (409, "BucketAlreadyExists")


def test_presigned_urls_valid_for_over_a_week_or_negative_time_are_refused(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    v4 = make_client(server, signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=3600)
    assert "X-Amz-Expires=3600" in url
    for expires, words in (("604801", "less than a week"), ("-5", "non-negative")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}"), timeout=10)
        assert e.value.code == 400
        fields = xml_fields(e.value.read().decode())
        assert fields["Code"] == "AuthorizationQueryParametersError"
        assert words in fields["Message"]
