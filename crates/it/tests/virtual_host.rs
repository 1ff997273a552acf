//! Virtual-host style addressing (`--domain`), driven by curl's own SigV4 signer.

mod common;

use std::process::Command;

use common::*;

fn curl(port: u16, host: Option<&str>, args: &[&str], url: &str) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
    ])
    .args([
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        &format!("{ACCESS_KEY}:{SECRET_KEY}"),
    ]);
    if let Some(h) = host {
        cmd.args(["--resolve", &format!("{h}:{port}:127.0.0.1")]);
    }
    let out = cmd
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_owned(), status.to_owned())
}

#[test]
fn bucket_in_the_host_name() {
    let s = Server::start_with(&["--domain", "s3.test"]);
    let p = s.port;
    let (_, st) = curl(
        p,
        None,
        &["-X", "PUT"],
        &format!("http://127.0.0.1:{p}/vhost"),
    );
    assert_eq!(st, "200");
    let (body, st) = curl(
        p,
        Some("vhost.s3.test"),
        &["-X", "PUT", "--data-binary", "hello vhost"],
        &format!("http://vhost.s3.test:{p}/a/b.txt"),
    );
    assert_eq!(st, "200", "{body}");
    let (body, st) = curl(
        p,
        Some("vhost.s3.test"),
        &[],
        &format!("http://vhost.s3.test:{p}/a/b.txt"),
    );
    assert_eq!((body.as_str(), st.as_str()), ("hello vhost", "200"));
    // Path style keeps working next to it, on the IP and on the bare domain.
    let (body, st) = curl(p, None, &[], &format!("http://127.0.0.1:{p}/vhost/a/b.txt"));
    assert_eq!((body.as_str(), st.as_str()), ("hello vhost", "200"));
    let (body, st) = curl(
        p,
        Some("s3.test"),
        &[],
        &format!("http://s3.test:{p}/vhost/a/b.txt"),
    );
    assert_eq!((body.as_str(), st.as_str()), ("hello vhost", "200"));
    let (body, st) = curl(
        p,
        Some("vhost.s3.test"),
        &[],
        &format!("http://vhost.s3.test:{p}/?list-type=2"),
    );
    assert_eq!(st, "200");
    assert!(body.contains("<Key>a/b.txt</Key>"), "{body}");
}
