//! A crash in the middle of a PUT leaves the previous version intact and no partial data visible.

mod common;

use std::io::Write;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::*;

#[tokio::test]
async fn kill_during_put_keeps_previous_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let mut s = Server::start_in(&data_dir);
    let c = s.client();
    c.create_bucket().bucket("crash").send().await.unwrap();
    c.put_object()
        .bucket("crash")
        .key("obj")
        .body(ByteStream::from_static(b"previous version"))
        .send()
        .await
        .unwrap();

    // Start a 64 MiB PUT, send 8 MiB of it, then kill the server with SIGKILL.
    let conf = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let req = c
        .put_object()
        .bucket("crash")
        .key("obj")
        .presigned(conf)
        .await
        .unwrap();
    let uri: http::Uri = req.uri().parse().unwrap();
    let path = uri.path_and_query().unwrap().as_str().to_owned();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        sock,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
        s.port,
        64 << 20
    )
    .unwrap();
    let chunk = random_bytes(1 << 20);
    for _ in 0..8 {
        sock.write_all(&chunk).unwrap();
    }
    sock.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tmp_files = std::fs::read_dir(data_dir.join("tmp")).unwrap().count();
    assert_eq!(tmp_files, 1, "the upload in flight has one temporary file");
    s.kill();
    drop(sock);

    let s = Server::start_in(&data_dir);
    let c = s.client();
    let out = c
        .get_object()
        .bucket("crash")
        .key("obj")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().as_ref(),
        b"previous version"
    );
    let listed = c.list_objects_v2().bucket("crash").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1);
    assert_eq!(listed.contents()[0].size(), Some(16));
    assert_eq!(
        std::fs::read_dir(data_dir.join("tmp")).unwrap().count(),
        0,
        "temporaries are cleaned at start"
    );
}

#[tokio::test]
async fn client_abort_leaves_nothing_behind() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("gone").send().await.unwrap();
    let conf = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let req = c
        .put_object()
        .bucket("gone")
        .key("half")
        .presigned(conf)
        .await
        .unwrap();
    let uri: http::Uri = req.uri().parse().unwrap();
    let path = uri.path_and_query().unwrap().as_str().to_owned();
    {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            sock,
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 10000000\r\n\r\n",
            s.port
        )
        .unwrap();
        sock.write_all(&random_bytes(3_000_000)).unwrap();
    } // dropped: the client went away mid-body
    let tmp_dir = s.data_dir.join("tmp");
    let tmp_files = || std::fs::read_dir(&tmp_dir).map(|d| d.count()).unwrap_or(0);
    // The upload starts (its temporary file appears), then the server notices the client left
    // and removes it. (If both happen between two polls, the first wait simply times out.)
    wait_for(|| tmp_files() > 0, 2).await;
    wait_until(|| tmp_files() == 0).await;
    let e = c
        .head_object()
        .bucket("gone")
        .key("half")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&e), Some(404));
    assert_eq!(
        std::fs::read_dir(s.data_dir.join("tmp")).unwrap().count(),
        0
    );
    // Overwritten and deleted objects' blobs are collected.
    for i in 0..3 {
        c.put_object()
            .bucket("gone")
            .key("k")
            .body(ByteStream::from(vec![i; 1000]))
            .send()
            .await
            .unwrap();
    }
    c.delete_object()
        .bucket("gone")
        .key("k")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut blobs = 0;
    for shard in std::fs::read_dir(s.data_dir.join("blobs")).unwrap() {
        blobs += std::fs::read_dir(shard.unwrap().path()).unwrap().count();
    }
    assert_eq!(blobs, 0, "no blob files remain for deleted objects");
}

/// Polls `cond` for up to 10 seconds (background work: abort cleanup, garbage collection).
async fn wait_until(cond: impl Fn() -> bool) {
    wait_for(cond, 10).await;
}

/// Polls `cond` every 5 ms for up to `seconds`.
async fn wait_for(cond: impl Fn() -> bool, seconds: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
