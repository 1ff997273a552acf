//! Test harness: runs the real `seedbucket` binary on a free port with a fresh data dir.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const ACCESS_KEY: &str = "SBTESTROOTACCESSKEY1";
pub const SECRET_KEY: &str = "test-root-secret-key-0123456789abcdefghij";

/// The binary under test: `$SEEDBUCKET_BIN`, else the workspace's release or debug build.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SEEDBUCKET_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("seedbucket");
        if p.exists() {
            return p;
        }
    }
    panic!("no seedbucket binary: run `cargo build --release -p seedbucket` or set SEEDBUCKET_BIN");
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut s = Self::spawn(&data_dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data dir (for restart tests); the caller keeps the dir alive.
    pub fn start_in(data_dir: &Path) -> Self {
        Self::spawn(data_dir, &[])
    }

    /// Starts the server on a free port. A port found free can be taken before the server
    /// binds it (by another test's server binding port 0), so a server that exits at start is
    /// started again on another port.
    fn spawn(data_dir: &Path, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(binary())
                .args(["serve", "--data-dir"])
                .arg(data_dir)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--peer-listen", "127.0.0.1:0"])
                .args(extra)
                .env("SEEDBUCKET_ROOT_ACCESS_KEY", ACCESS_KEY)
                .env("SEEDBUCKET_ROOT_SECRET_KEY", SECRET_KEY)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn seedbucket");
            let mut s = Self {
                child: Some(child),
                port,
                data_dir: data_dir.to_path_buf(),
                _tmp: None,
            };
            if s.wait_ready() {
                return s;
            }
        }
        panic!("seedbucket did not start in 5 attempts");
    }

    /// Whether the server answers its health check; false if it exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_probe::get_ok(&format!("{}/_seedbucket/health", self.url())).unwrap_or(false) {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_status)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("seedbucket did not become ready on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_with(&self, access_key: &str, secret_key: &str) -> Client {
        let creds = Credentials::new(access_key, secret_key, None, None, "test");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        Client::from_conf(conf)
    }

    /// The server's process id (for reading its memory in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to clean up, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `seedbucket key create NAME` on this server's data dir; returns (access, secret, user id).
    pub fn create_key(&self, name: &str) -> (String, String, String) {
        let out = Command::new(binary())
            .args(["key", "create", name, "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("run key create");
        assert!(
            out.status.success(),
            "key create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |label: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {label} in {text}"))
        };
        (
            field("access key:"),
            field("secret key:"),
            field("user id:"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

mod http_probe {
    /// Minimal blocking GET used before the async runtime matters: true on HTTP 200.
    pub fn get_ok(url: &str) -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.starts_with("HTTP/1.1 200"))
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// The S3 error code of an SDK error, if it has one.
pub fn error_code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code().map(str::to_owned))
}

/// The HTTP status of an SDK error's response, if there was one.
pub fn error_status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}
