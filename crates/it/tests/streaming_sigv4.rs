//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: every chunk signed, chained from the seed signature.
//! No stock client here sends it over plain HTTP, so the request is built by hand with
//! aws-sigv4's signer (seed and chunk signatures), the way SDKs do.

mod common;

use std::io::{Read, Write};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use common::*;

const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

/// Sends a PUT with a signed aws-chunked body; `tamper` flips a byte of the second chunk after
/// signing. Returns the HTTP status line and body.
fn signed_chunked_put(
    port: u16,
    path: &str,
    data: &[u8],
    chunk: usize,
    tamper: bool,
) -> (u16, String) {
    let host = format!("127.0.0.1:{port}");
    let url = format!("http://{host}{path}");
    let now = SystemTime::now();
    let identity = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let decoded_len = data.len().to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded_len.as_str()),
    ];
    let signable = SignableRequest::new(
        "PUT",
        &url,
        headers.iter().copied(),
        SignableBody::Precomputed(STREAMING.into()),
    )
    .unwrap();
    let (instructions, seed) = sign(signable, &params).unwrap().into_parts();
    let chunk_params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(now)
        .settings(())
        .build()
        .unwrap();
    let mut body = Vec::new();
    let mut running = seed;
    let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    pieces.push(&[]);
    for (i, piece) in pieces.iter().enumerate() {
        let sig = v4::sign_chunk(&Bytes::copy_from_slice(piece), &running, &chunk_params)
            .unwrap()
            .into_parts()
            .1;
        let mut bytes = piece.to_vec();
        if tamper && i == 1 {
            bytes[0] ^= 0xff;
        }
        body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
        running = sig;
    }
    let mut req = format!("PUT {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let (signing_headers, _) = instructions.into_parts();
    for h in signing_headers {
        req.push_str(&format!("{}: {}\r\n", h.name(), h.value()));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.write_all(req.as_bytes()).unwrap();
    let _ = sock.write_all(&body);
    let mut resp = String::new();
    let _ = sock.read_to_string(&mut resp);
    let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp)
}

#[tokio::test]
async fn signed_chunks_accepted_and_tampering_refused() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("chunks").send().await.unwrap();
    let data = random_bytes(200_000);
    let (status, resp) = signed_chunked_put(s.port, "/chunks/signed", &data, 65_536, false);
    assert_eq!(status, 200, "{resp}");
    let got = c
        .get_object()
        .bucket("chunks")
        .key("signed")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.e_tag(),
        Some(format!("\"{}\"", md5_hex(&data)).as_str())
    );
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        data.as_slice()
    );

    c.put_object()
        .bucket("chunks")
        .key("kept")
        .body(ByteStream::from_static(b"old"))
        .send()
        .await
        .unwrap();
    let (status, resp) = signed_chunked_put(s.port, "/chunks/kept", &data, 65_536, true);
    assert!(
        (400..500).contains(&status),
        "tampered chunk must be refused: {resp}"
    );
    let kept = c
        .get_object()
        .bucket("chunks")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.body.collect().await.unwrap().into_bytes().as_ref(),
        b"old"
    );
}
