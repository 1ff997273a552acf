//! Hostile requests to the real server: the parsers s3s and our handlers run on request data
//! (SigV4 `Authorization` headers, presigned queries, every XML body, `Range`, keys, metadata
//! and tagging headers) fed mutated and arbitrary input over TCP. Properties: every request
//! gets an HTTP answer (a dropped connection would be a panic in a handler), never a 5xx other
//! than 501 for a client's input, and the server's memory stays bounded.
//! Seeds: tests/corpus/{sigv4_authorization,presigned_query,s3_xml,s3_range}; cases per
//! property: `SEEDBUCKET_FUZZ_CASES` (default 256).

mod common;

#[path = "../../../tests/corpus/replay.rs"]
mod replay;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const BUCKET: &str = "hostile";

/// Bytes outside unreserved characters as `%XX`.
fn enc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// A request signed by the root key (in headers, or in the query when `presign`).
struct Req {
    method: &'static str,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &'static str, path_and_query: &str) -> Self {
        Self {
            method,
            path_and_query: path_and_query.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    fn body(mut self, b: Vec<u8>) -> Self {
        self.body = b;
        self
    }

    /// Signs the request; returns the headers to send and the final path and query.
    fn sign(&self, port: u16, presign: bool) -> (Vec<(String, String)>, String) {
        let host = format!("127.0.0.1:{port}");
        let url = format!("http://{host}{}", self.path_and_query);
        let identity = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(600));
        } else {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let mut headers: Vec<(String, String)> = vec![("host".into(), host.clone())];
        headers.extend(self.headers.iter().cloned());
        let body = if presign {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(&self.body)
        };
        let signable = SignableRequest::new(
            self.method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            body,
        )
        .expect("signable request");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let (signed_headers, params) = instructions.into_parts();
        for h in signed_headers {
            headers.push((h.name().to_owned(), h.value().to_owned()));
        }
        let mut target = self.path_and_query.clone();
        for (k, v) in params {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(&format!("{k}={}", enc(v.as_bytes())));
        }
        (headers, target)
    }
}

/// Sends one request on a fresh connection; returns the status (0: no HTTP answer).
fn send(port: u16, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> u16 {
    // Header lines cannot hold CR or LF: a mutation that adds them would only split the line.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut head = format!("{method} {} HTTP/1.1\r\n", clean(target));
    for (k, v) in headers {
        head.push_str(&format!("{}: {}\r\n", clean(k), clean(v)));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    sock.write_all(head.as_bytes()).expect("write head");
    let _ = sock.write_all(body);
    let mut resp = Vec::new();
    let _ = sock.read_to_end(&mut resp);
    std::str::from_utf8(resp.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn assert_client_answer(status: u16, what: &str) {
    assert!(status != 0, "{what}: no HTTP answer (connection dropped)");
    assert!(status < 500 || status == 501, "{what}: answered {status}");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn runner() -> TestRunner {
    TestRunner::new(replay::config())
}

/// Where each XML corpus seed goes (by file name prefix).
fn xml_target(seed: &str, upload_id: &str) -> (&'static str, String) {
    let obj = format!("/{BUCKET}/obj");
    match seed.split('_').next().unwrap_or("") {
        "acl" => ("PUT", format!("/{BUCKET}?acl")),
        "cors" => ("PUT", format!("/{BUCKET}?cors")),
        "tagging" => ("PUT", format!("{obj}?tagging")),
        "delete" => ("POST", format!("/{BUCKET}?delete")),
        "complete" => ("POST", format!("{obj}?uploadId={upload_id}")),
        "lifecycle" => ("PUT", format!("/{BUCKET}?lifecycle")),
        "versioning" => ("PUT", format!("/{BUCKET}?versioning")),
        "policy" => ("PUT", format!("/{BUCKET}?policy")),
        _ => ("PUT", "/hostile-new-bucket".to_owned()),
    }
}

#[test]
fn hostile_requests_get_client_errors() {
    let s = Server::start();
    let port = s.port;
    let pid = s.pid().expect("server pid");
    let setup = |r: Req| {
        let (h, t) = r.sign(port, false);
        send(port, r.method, &t, &h, &r.body)
    };
    assert_eq!(setup(Req::new("PUT", &format!("/{BUCKET}"))), 200);
    assert_eq!(
        setup(Req::new("PUT", &format!("/{BUCKET}/obj")).body(vec![7; 5000])),
        200
    );
    let start = Req::new("POST", &format!("/{BUCKET}/obj?uploads"));
    let (h, t) = start.sign(port, false);
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("POST {t} HTTP/1.1\r\n");
    for (k, v) in &h {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    sock.write_all(head.as_bytes()).expect("write");
    let mut resp = String::new();
    sock.read_to_string(&mut resp).expect("read");
    let upload_id = resp
        .split("<UploadId>")
        .nth(1)
        .and_then(|r| r.split("</UploadId>").next())
        .expect("an upload id")
        .to_owned();
    let rss_before = vm_rss_kib(pid);
    let mut tried = 0u64;

    // SigV4 Authorization headers: a valid one, mutated.
    let authorizations = replay::seeds("sigv4_authorization");
    runner()
        .run(&replay::text_inputs("sigv4_authorization", 400), |auth| {
            let (mut h, t) = Req::new("GET", &format!("/{BUCKET}?list-type=2")).sign(port, false);
            for (k, v) in h.iter_mut() {
                if k == "authorization" {
                    *v = auth.clone();
                }
            }
            assert_client_answer(
                send(port, "GET", &t, &h, b""),
                &format!("Authorization {auth:?}"),
            );
            Ok(())
        })
        .expect("Authorization headers");
    tried += u64::from(replay::config().cases) + authorizations.len() as u64;

    // Presigned queries: the X-Amz-* parameters of a valid URL, mutated.
    runner()
        .run(&replay::text_inputs("presigned_query", 600), |query| {
            let target = format!("/{BUCKET}/obj?{}", query.replace(' ', "%20"));
            let status = send(
                port,
                "GET",
                &target,
                &[("host".into(), format!("127.0.0.1:{port}"))],
                b"",
            );
            assert_client_answer(status, &format!("presigned query {query:?}"));
            Ok(())
        })
        .expect("presigned queries");
    // And a freshly presigned URL works, so the corpus form is the real one.
    let (h, t) = Req::new("GET", &format!("/{BUCKET}/obj")).sign(port, true);
    assert_eq!(send(port, "GET", &t, &h, b""), 200, "presigned GET {t}");

    // XML bodies of every configuration call, signed, so the body is parsed.
    let xml_seeds = replay::seeds("s3_xml");
    let names: Vec<String> = xml_seeds.iter().map(|(n, _)| n.clone()).collect();
    for (name, body) in &xml_seeds {
        let (method, target) = xml_target(name, &upload_id);
        if name.starts_with("complete") {
            continue; // a valid completion would end the upload the other cases use
        }
        let status = setup(Req::new(method, &target).body(body.clone()));
        assert!(status < 300, "seed {name} is refused: {status}");
    }
    runner()
        .run(
            &(prop::sample::select(names), replay::inputs("s3_xml", 2000)),
            |(name, body)| {
                let (method, target) = xml_target(&name, &upload_id);
                let status = setup(Req::new(method, &target).body(body.clone()));
                if status == 200 && name.starts_with("complete") {
                    panic!(
                        "a mutated completion succeeded: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                assert_client_answer(
                    status,
                    &format!(
                        "{method} {target} with {:?}",
                        String::from_utf8_lossy(&body)
                    ),
                );
                Ok(())
            },
        )
        .expect("XML bodies");

    // Range headers on GetObject (s3s parses them) and keys of arbitrary bytes.
    runner()
        .run(&replay::text_inputs("s3_range", 200), |range| {
            // Sent unsigned (S3 allows unsigned extra headers): a mutated value may hold bytes
            // no signer accepts.
            let (mut h, t) = Req::new("GET", &format!("/{BUCKET}/obj")).sign(port, false);
            h.push(("range".into(), range.clone()));
            let status = send(port, "GET", &t, &h, b"");
            assert_client_answer(status, &format!("Range {range:?}"));
            Ok(())
        })
        .expect("Range headers");
    runner()
        .run(&prop::collection::vec(any::<u8>(), 1..1100), |key| {
            let path = format!("/{BUCKET}/{}", enc(&key));
            for method in ["PUT", "HEAD", "GET", "DELETE"] {
                let r = Req::new(method, &path).body(if method == "PUT" {
                    b"k".to_vec()
                } else {
                    Vec::new()
                });
                assert_client_answer(setup(r), &format!("{method} key {key:?}"));
            }
            Ok(())
        })
        .expect("keys");

    // User metadata and tagging headers on PutObject.
    let meta = (
        prop::collection::vec(("[a-z0-9-]{1,40}", "[ -~]{0,300}"), 0..12),
        replay::text_inputs("s3_tagging", 300),
    );
    runner()
        .run(&meta, |(pairs, tagging)| {
            let mut r = Req::new("PUT", &format!("/{BUCKET}/meta")).body(b"m".to_vec());
            for (k, v) in &pairs {
                r = r.header(&format!("x-amz-meta-{k}"), v.trim());
            }
            let (mut h, t) = r.sign(port, false);
            h.push(("x-amz-tagging".into(), tagging.trim().to_owned()));
            let status = send(port, "PUT", &t, &h, &r.body);
            assert_client_answer(status, &format!("metadata {pairs:?} tagging {tagging:?}"));
            Ok(())
        })
        .expect("metadata headers");
    tried += 5 * u64::from(replay::config().cases);

    // The server is still up, and it gave back what the requests took.
    assert_eq!(setup(Req::new("GET", &format!("/{BUCKET}/obj"))), 200);
    let rss_after = vm_rss_kib(pid);
    eprintln!(
        "hostile HTTP: {tried} requests; server VmRSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < rss_before + 150 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
}
