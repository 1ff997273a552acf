//! The S3 API through aws-sdk-s3 (Rust) against the real server.

mod common;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use common::*;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

async fn get_bytes(c: &aws_sdk_s3::Client, b: &str, k: &str) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(b)
        .key(k)
        .send()
        .await
        .expect("get_object");
    out.body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec()
}

#[tokio::test]
async fn buckets_lifecycle_and_errors() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("alpha").send().await.unwrap();
    c.create_bucket().bucket("beta.data").send().await.unwrap();
    let e = c.create_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("BucketAlreadyOwnedByYou"));
    assert_eq!(error_status(&e), Some(409));
    let e = c
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidBucketName"));
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["alpha", "beta.data"]);
    c.head_bucket().bucket("alpha").send().await.unwrap();
    let e = c.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(error_status(&e), Some(404));
    let loc = c
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .unwrap();
    assert!(
        loc.location_constraint()
            .is_none_or(|l| l.as_str().is_empty())
    );
    c.put_object()
        .bucket("alpha")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("BucketNotEmpty"));
    c.delete_object()
        .bucket("alpha")
        .key("k")
        .send()
        .await
        .unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    let e = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn put_get_head_metadata_and_checksums() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("bkt1").send().await.unwrap();
    let data = random_bytes(3 * MIB + 17);
    // The SDK's default: CRC32 in an aws-chunked trailer.
    let put = c
        .put_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .content_type("application/x-test")
        .cache_control("max-age=60")
        .metadata("Color", "blue")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&data)).as_str())
    );
    assert!(put.checksum_crc32().is_some());
    let got = c
        .get_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(got.checksum_crc32(), put.checksum_crc32());
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.as_ref(), data.as_slice());
    for alg in [
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        c.put_object()
            .bucket("bkt1")
            .key("sum")
            .checksum_algorithm(alg)
            .body(ByteStream::from(data[..1000].to_vec()))
            .send()
            .await
            .unwrap();
    }
    let head = c
        .head_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.accept_ranges(), Some("bytes"));
    let e = c
        .head_object()
        .bucket("bkt1")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(404));
    let e = c
        .get_object()
        .bucket("bkt1")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchKey"));
    let e = c
        .get_object()
        .bucket("nobucket")
        .key("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchBucket"));
    // A wrong explicit checksum is refused and nothing is stored.
    let e = c
        .put_object()
        .bucket("bkt1")
        .key("bad")
        .checksum_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        .body(ByteStream::from_static(b"not empty"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("BadDigest"));
    let e = c
        .head_object()
        .bucket("bkt1")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(404));
    // Content-MD5 mismatch.
    let e = c
        .put_object()
        .bucket("bkt1")
        .key("bad")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(ByteStream::from_static(b"abc"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("BadDigest"));
    // Overwrite, then delete; delete of a missing key is fine.
    c.put_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, "bkt1", "dir/obj.bin").await, b"v2");
    c.delete_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .send()
        .await
        .unwrap();
    c.delete_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("bkt1")
        .key("dir/obj.bin")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchKey"));
}

#[tokio::test]
async fn odd_keys_round_trip() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("keys").send().await.unwrap();
    let long = "k".repeat(1024);
    let keys = [
        "a b",
        "ünï/cødé ✓",
        "../../etc/passwd",
        "x//y",
        "plus+and%percent",
        "/lead",
        long.as_str(),
    ];
    for k in keys {
        c.put_object()
            .bucket("keys")
            .key(k)
            .body(ByteStream::from(k.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    for k in keys {
        assert_eq!(get_bytes(&c, "keys", k).await, k.as_bytes(), "key {k:?}");
    }
    let listed: Vec<String> = c
        .list_objects_v2()
        .bucket("keys")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let too_long = "k".repeat(1025);
    let e = c
        .put_object()
        .bucket("keys")
        .key(too_long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("KeyTooLongError"));
}

#[tokio::test]
async fn ranges_parts_and_conditionals() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rng").send().await.unwrap();
    let data = random_bytes(100_000);
    let put = c
        .put_object()
        .bucket("rng")
        .key("o")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    for (range, lo, hi) in [
        ("bytes=0-9", 0, 10),
        ("bytes=99990-", 99_990, 100_000),
        ("bytes=-5", 99_995, 100_000),
        ("bytes=500-99999999", 500, 100_000),
    ] {
        let out = c
            .get_object()
            .bucket("rng")
            .key("o")
            .range(range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {}-{}/100000", lo, hi - 1).as_str())
        );
        let body = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(body.as_ref(), &data[lo..hi], "{range}");
    }
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .range("bytes=100000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(416));
    assert_eq!(error_code(&e).as_deref(), Some("InvalidRange"));
    // partNumber=1 of a single-part object is the whole object.
    let out = c
        .get_object()
        .bucket("rng")
        .key("o")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().len(),
        100_000
    );
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .part_number(2)
        .send()
        .await
        .unwrap_err();
    // A part the object does not have (issue 15: 400 InvalidPartNumber).
    assert_eq!(error_status(&e), Some(400));
    assert_eq!(error_code(&e).as_deref(), Some("InvalidPartNumber"));
    // Conditionals.
    c.get_object()
        .bucket("rng")
        .key("o")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(412));
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(304));
    let future = aws_smithy_types::DateTime::from_secs(4_000_000_000);
    let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(304));
    let e = c
        .get_object()
        .bucket("rng")
        .key("o")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(412));
    // If-Match true wins over a failing If-Unmodified-Since.
    c.get_object()
        .bucket("rng")
        .key("o")
        .if_match(&etag)
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap();
    // Conditional writes.
    let e = c
        .put_object()
        .bucket("rng")
        .key("o")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(412));
    c.put_object()
        .bucket("rng")
        .key("new")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn multipart_upload_out_of_order_and_errors() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let parts: Vec<Vec<u8>> = vec![
        random_bytes(5 * MIB),
        random_bytes(5 * MIB + 3),
        random_bytes(1234),
    ];
    let up = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .content_type("video/x-test")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let mut etags = vec![String::new(); 3];
    for i in [2usize, 0, 1] {
        let out = c
            .upload_part()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .part_number(i as i32 + 1)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(parts[i].clone()))
            .send()
            .await
            .unwrap();
        etags[i] = out.e_tag().unwrap().to_owned();
    }
    let listed = c
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    assert_eq!(listed.parts()[0].part_number(), Some(1));
    let uploads = c
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    let part = |n: i32, e: &str| CompletedPart::builder().part_number(n).e_tag(e).build();
    // Out of order in the completion list.
    let bad = CompletedMultipartUpload::builder()
        .parts(part(2, &etags[1]))
        .parts(part(1, &etags[0]))
        .build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidPartOrder"));
    let bad = CompletedMultipartUpload::builder()
        .parts(part(1, "\"00000000000000000000000000000000\""))
        .build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidPart"));
    // A small part that is not last.
    let bad = CompletedMultipartUpload::builder()
        .parts(part(1, &etags[0]))
        .parts(part(3, &etags[2]))
        .parts(part(2, &etags[1]))
        .build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidPartOrder"));
    let all = CompletedMultipartUpload::builder()
        .parts(part(1, &etags[0]))
        .parts(part(2, &etags[1]))
        .parts(part(3, &etags[2]))
        .build();
    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(all)
        .send()
        .await
        .unwrap();
    assert!(done.e_tag().unwrap().ends_with("-3\""));
    let whole: Vec<u8> = parts.concat();
    assert_eq!(get_bytes(&c, "mpu", "big").await, whole);
    let head = c
        .head_object()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("video/x-test"));
    assert_eq!(head.parts_count(), Some(3));
    let p2 = c
        .get_object()
        .bucket("mpu")
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.parts_count(), Some(3));
    assert_eq!(
        p2.body.collect().await.unwrap().into_bytes().as_ref(),
        parts[1].as_slice()
    );
    // A range across the part boundary.
    let out = c
        .get_object()
        .bucket("mpu")
        .key("big")
        .range(format!("bytes={}-{}", 5 * MIB - 10, 5 * MIB + 9))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().as_ref(),
        &whole[5 * MIB - 10..5 * MIB + 10]
    );
    let e = c
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchUpload"));

    // EntityTooSmall, then abort.
    let id2 = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("small")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut tags = Vec::new();
    for n in 1..=2 {
        let out = c
            .upload_part()
            .bucket("mpu")
            .key("small")
            .upload_id(&id2)
            .part_number(n)
            .body(ByteStream::from_static(b"tiny"))
            .send()
            .await
            .unwrap();
        tags.push(out.e_tag().unwrap().to_owned());
    }
    let two = CompletedMultipartUpload::builder()
        .parts(part(1, &tags[0]))
        .parts(part(2, &tags[1]))
        .build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("small")
        .upload_id(&id2)
        .multipart_upload(two)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("EntityTooSmall"));
    c.abort_multipart_upload()
        .bucket("mpu")
        .key("small")
        .upload_id(&id2)
        .send()
        .await
        .unwrap();
    let e = c
        .list_parts()
        .bucket("mpu")
        .key("small")
        .upload_id(&id2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchUpload"));
    let e = c
        .upload_part()
        .bucket("mpu")
        .key("small")
        .upload_id("nope")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn listing_pages_with_delimiter() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("lst").send().await.unwrap();
    let mut keys = Vec::new();
    for d in 0..4 {
        for f in 0..3 {
            keys.push(format!("dir{d}/file{f}"));
        }
    }
    keys.extend(["top1".to_owned(), "top2".to_owned()]);
    for k in &keys {
        c.put_object()
            .bucket("lst")
            .key(k)
            .body(ByteStream::from_static(b"."))
            .send()
            .await
            .unwrap();
    }
    // Delimited, two at a time: 4 prefixes and 2 keys in 3 pages.
    let mut token = None;
    let mut prefixes = Vec::new();
    let mut objects = Vec::new();
    let mut pages = 0;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("lst")
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        objects.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_owned);
        assert!(pages < 10);
    }
    assert_eq!(prefixes, ["dir0/", "dir1/", "dir2/", "dir3/"]);
    assert_eq!(objects, ["top1", "top2"]);
    assert_eq!(pages, 3);
    // Prefix + start-after, all pages, no delimiter.
    let out = c
        .list_objects_v2()
        .bucket("lst")
        .prefix("dir1/")
        .start_after("dir1/file0")
        .send()
        .await
        .unwrap();
    let got: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(got, ["dir1/file1", "dir1/file2"]);
    let out = c
        .list_objects_v2()
        .bucket("lst")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_count(), Some(0));
    // v1 with marker.
    let out = c
        .list_objects()
        .bucket("lst")
        .marker("dir3/file2")
        .send()
        .await
        .unwrap();
    let got: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(got, ["top1", "top2"]);
}

#[tokio::test]
async fn auth_failures_presigned_and_owner_checks() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("sec").send().await.unwrap();
    c.put_object()
        .bucket("sec")
        .key("o")
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await
        .unwrap();
    let bad = s.client_with(ACCESS_KEY, "wrong-secret");
    let e = bad.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("SignatureDoesNotMatch"));
    let unknown = s.client_with("SBNOSUCHKEY000000000", "x");
    let e = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidAccessKeyId"));
    // Anonymous.
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/sec/o", s.url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    // A second user sees nothing of the first's.
    let (ak, sk, _) = s.create_key("second");
    let other = s.client_with(&ak, &sk);
    let e = other
        .get_object()
        .bucket("sec")
        .key("o")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("AccessDenied"));
    assert!(
        other
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .is_empty()
    );
    // Expected bucket owner.
    let root_id = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .owner()
        .and_then(|o| o.id().map(str::to_owned))
        .unwrap();
    c.get_object()
        .bucket("sec")
        .key("o")
        .expected_bucket_owner(&root_id)
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("sec")
        .key("o")
        .expected_bucket_owner("000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(403));
    // Presigned GET with a response override, presigned PUT.
    let conf = PresigningConfig::expires_in(Duration::from_secs(60)).unwrap();
    let req = c
        .get_object()
        .bucket("sec")
        .key("o")
        .response_content_type("text/x-override")
        .presigned(conf.clone())
        .await
        .unwrap();
    let r = http.get(req.uri()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/x-override");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"secret");
    let req = c
        .put_object()
        .bucket("sec")
        .key("presigned")
        .presigned(conf)
        .await
        .unwrap();
    let r = http
        .put(req.uri())
        .body("via presigned put")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        get_bytes(&c, "sec", "presigned").await,
        b"via presigned put"
    );
    // Expired.
    let short = PresigningConfig::builder()
        .start_time(std::time::SystemTime::now() - Duration::from_secs(120))
        .expires_in(Duration::from_secs(1))
        .build()
        .unwrap();
    let req = c
        .get_object()
        .bucket("sec")
        .key("o")
        .presigned(short)
        .await
        .unwrap();
    let r = http.get(req.uri()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Deleting the key revokes it.
    let out = std::process::Command::new(binary())
        .args(["key", "delete", "second", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = other.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&e).as_deref(), Some("InvalidAccessKeyId"));
}
