//! The access log: one line per request on every channel (and per peer connection), as nginx
//! and MinIO keep one.
//!
//! An [`Entry`] says who asked what and how it ended; [`format_text`] and [`format_json`] turn
//! it into a line (pure functions, tested alone); an [`AccessLog`] hands lines to a writer thread
//! through a bounded queue, so a request never waits on the log's file or pipe. When the queue is
//! full (a disk that stalls), lines are dropped and counted rather than slowing requests down;
//! the count is written as its own line once the writer catches up.
//!
//! Entries never hold a secret: the access key id is taken from the credential scope, never the
//! signature, and query strings are not logged (presigned URLs carry signatures there).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

/// Lines queued towards the writer, at most.
const QUEUE: usize = 65_536;

/// Which part of seedbucket served the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    S3,
    Webseed,
    TrackerHttp,
    TrackerUdp,
    /// The WebSocket tracker for browsers: one line per message.
    TrackerWs,
    Peer,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::S3 => "s3",
            Channel::Webseed => "webseed",
            Channel::TrackerHttp => "tracker-http",
            Channel::TrackerUdp => "tracker-udp",
            Channel::TrackerWs => "tracker-ws",
            Channel::Peer => "peer",
        }
    }
}

/// One request (or one peer connection), as logged.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it started.
    pub time: SystemTime,
    pub channel: Channel,
    /// The client's address (`ip:port`), after trusted-proxy resolution where that applies.
    pub remote: Option<String>,
    /// The access key id that signed it; `None` for anonymous requests.
    pub key: Option<String>,
    /// What was asked: S3's operation name (`GetObject`), `announce`, `connect`, `session`...
    pub operation: String,
    /// The bucket, for S3 and the webseed.
    pub bucket: Option<String>,
    /// The object key, for S3 and the webseed.
    pub object: Option<String>,
    /// The info-hash (hex), for the tracker and peer connections.
    pub info_hash: Option<String>,
    /// HTTP status for HTTP channels (`200-aborted` when the client left before the whole body,
    /// `-failed` when the body could not be read); for UDP a word (`ok`, `error`, `dropped`).
    pub status: String,
    /// Bytes sent to the client (response body, or payload uploaded to a peer).
    pub bytes_out: u64,
    /// Bytes received from the client (request body, or payload a peer sent).
    pub bytes_in: u64,
    pub duration: Duration,
    /// `x-amz-request-id` for S3-port requests.
    pub request_id: Option<String>,
}

impl Entry {
    /// A new entry for a request that starts now.
    pub fn new(channel: Channel, operation: impl Into<String>) -> Self {
        Self {
            time: SystemTime::now(),
            channel,
            remote: None,
            key: None,
            operation: operation.into(),
            bucket: None,
            object: None,
            info_hash: None,
            status: String::new(),
            bytes_out: 0,
            bytes_in: 0,
            duration: Duration::ZERO,
            request_id: None,
        }
    }
}

fn rfc3339_millis(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&format).unwrap_or_else(|_| "-".to_owned())
}

/// A field for the text form: `-` when absent; spaces, quotes, backslashes and control
/// characters escaped so that one entry is one line that splits on spaces.
fn text_field(v: Option<&str>) -> String {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return "-".to_owned();
    };
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '"' => out.push_str("%22"),
            '\\' => out.push_str("%5C"),
            c if c.is_control() => out.push_str(&format!("%{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The text form: time, channel, remote, key, operation, bucket/object or info-hash, status,
/// bytes out, bytes in, duration in ms, request id; `-` for what is absent.
pub fn format_text(e: &Entry) -> String {
    let target = match (&e.bucket, &e.object, &e.info_hash) {
        (Some(b), Some(o), _) => format!("{b}/{o}"),
        (Some(b), None, _) => b.clone(),
        (None, _, Some(h)) => h.clone(),
        _ => String::new(),
    };
    format!(
        "{} {} {} {} {} {} {} {} {} {:.3} {}",
        rfc3339_millis(e.time),
        e.channel.as_str(),
        text_field(e.remote.as_deref()),
        text_field(e.key.as_deref()),
        text_field(Some(&e.operation)),
        text_field(Some(&target)),
        text_field(Some(&e.status)),
        e.bytes_out,
        e.bytes_in,
        e.duration.as_secs_f64() * 1000.0,
        text_field(e.request_id.as_deref()),
    )
}

/// The JSON form (`--log-format json`): one object per line, absent fields left out.
pub fn format_json(e: &Entry) -> String {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        m.insert(k.to_owned(), v);
    };
    put("time", rfc3339_millis(e.time).into());
    put("channel", e.channel.as_str().into());
    for (k, v) in [
        ("remote", &e.remote),
        ("key", &e.key),
        ("bucket", &e.bucket),
        ("object", &e.object),
        ("info_hash", &e.info_hash),
        ("request_id", &e.request_id),
    ] {
        if let Some(v) = v {
            put(k, v.clone().into());
        }
    }
    put("operation", e.operation.clone().into());
    put("status", e.status.clone().into());
    put("bytes_out", e.bytes_out.into());
    put("bytes_in", e.bytes_in.into());
    put(
        "duration_ms",
        serde_json::Number::from_f64((e.duration.as_secs_f64() * 1e6).round() / 1e3)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    );
    serde_json::Value::Object(m).to_string()
}

/// Where the log goes (`--access-log off|stderr|FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stderr,
    File(PathBuf),
}

impl Destination {
    /// `off`, `stderr`, or a file path.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "off" | "" => Destination::Off,
            "stderr" | "-" => Destination::Stderr,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

/// The access log of one server. Cheap to clone; `off` costs one branch per request.
#[derive(Clone, Default)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: SyncSender<String>,
    json: bool,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("on", &self.inner.is_some())
            .finish()
    }
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Opens `dest` (a file is appended to and created if missing) and starts its writer thread.
    pub fn open(dest: &Destination, json: bool) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match dest {
            Destination::Off => return Ok(Self::off()),
            Destination::Stderr => Box::new(std::io::stderr()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out, &counter))?;
        Ok(Self {
            inner: Some(Arc::new(Inner { tx, json, dropped })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `entry`'s line; never blocks.
    pub fn record(&self, entry: &Entry) {
        let Some(inner) = &self.inner else {
            return;
        };
        let line = if inner.json {
            format_json(entry)
        } else {
            format_text(entry)
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = inner.tx.try_send(line)
        {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>, dropped: &AtomicU64) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = writeln!(out, "{line}");
        // Write what is queued, then flush once the queue is empty.
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                out,
                "access-log: {lost} lines dropped (the log could not keep up)"
            );
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut e = Entry::new(Channel::S3, "GetObject");
        e.time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_590_400_123);
        e.remote = Some("127.0.0.1:5000".into());
        e.key = Some("AKID".into());
        e.bucket = Some("b".into());
        e.object = Some("dir/a b\n\"c\"".into());
        e.status = "200".into();
        e.bytes_out = 10;
        e.duration = Duration::from_micros(1500);
        e.request_id = Some("R1".into());
        e
    }

    #[test]
    fn text_lines_are_one_line_of_space_separated_fields() {
        let line = format_text(&sample());
        assert_eq!(
            line,
            "2025-12-01T12:00:00.123Z s3 127.0.0.1:5000 AKID GetObject b/dir/a%20b%0A%22c%22 200 10 0 1.500 R1"
        );
        let mut anon = Entry::new(Channel::TrackerUdp, "announce");
        anon.time = SystemTime::UNIX_EPOCH;
        anon.info_hash = Some("ab".repeat(20));
        anon.status = "ok".into();
        let line = format_text(&anon);
        assert!(
            line.starts_with("1970-01-01T00:00:00.000Z tracker-udp - - announce abab"),
            "{line}"
        );
        assert!(line.ends_with(" ok 0 0 0.000 -"), "{line}");
    }

    #[test]
    fn json_lines_parse_back() {
        let v: serde_json::Value = serde_json::from_str(&format_json(&sample())).unwrap();
        assert_eq!(v["object"], "dir/a b\n\"c\"");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["status"], "200");
        assert!(v.get("info_hash").is_none());
    }

    #[test]
    fn lines_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("access-log-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("access.log");
        let log = AccessLog::open(&Destination::File(path.clone()), false).unwrap();
        log.record(&sample());
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            AccessLog::open(&Destination::Off, false)
                .map(|l| !l.is_on())
                .unwrap()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
