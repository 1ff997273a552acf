//! The access log: one line per request on every channel (and per peer connection), as nginx
//! and MinIO keep one.
//!
//! An [`Entry`] says who asked what and how it ended; [`format_text`] and [`format_json`] turn
//! it into a line (pure functions, tested alone); an [`AccessLog`] appends lines to a bounded
//! buffer that a writer thread writes out in batches, at least every [`BATCH_WAIT`] (sooner when
//! [`BATCH_BYTES`] are waiting), so a request never waits on the log's file or pipe and a busy
//! server makes one write for thousands of lines instead of a wake-up and a write per line. When
//! the buffer is full (a disk that stalls), lines are dropped and counted rather than slowing
//! requests down; the count is written as its own line once the writer catches up.
//! [`AccessLog::flush`] writes out what is waiting (the server calls it when it stops).
//!
//! Entries never hold a secret: the access key id is taken from the credential scope, never the
//! signature, and query strings are not logged (presigned URLs carry signatures there).

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Bytes of lines waiting for the writer, at most (about 50,000 lines); past that lines are
/// dropped and counted.
const MAX_WAITING: usize = 8 << 20;
/// The writer wakes when this much is waiting...
pub const BATCH_BYTES: usize = 256 << 10;
/// ... or when the oldest waiting line is this old.
pub const BATCH_WAIT: Duration = Duration::from_millis(100);

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

/// `t` as `2026-12-01T12:42:29.196Z`.
fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339_millis(&mut out, t);
    out
}

/// Appends `t` as [`rfc3339_millis`] writes it. The part up to the seconds is formatted once
/// per second per thread.
fn push_rfc3339_millis(out: &mut String, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let dt = time::OffsetDateTime::from(t);
    let second = dt.unix_timestamp();
    let millis = dt.millisecond();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let format =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            cached.1 = dt.format(&format).unwrap_or_else(|_| "-".to_owned());
            cached.0 = second;
        }
        let _ = write!(out, "{}.{millis:03}Z", cached.1);
    });
}

/// Appends a field of the text form to `out`: `-` when absent; spaces, quotes, backslashes and
/// control characters escaped so that one entry is one line that splits on spaces.
fn push_text_field(out: &mut String, v: Option<&str>) {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        out.push('-');
        return;
    };
    // Most fields (addresses, hashes, operation names) need no escape.
    if v.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '"' => out.push_str("%22"),
            '\\' => out.push_str("%5C"),
            c if c.is_control() => {
                let _ = write!(out, "%{:02X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The text form: time, channel, remote, key, operation, bucket/object or info-hash, status,
/// bytes out, bytes in, duration in ms, request id; `-` for what is absent.
pub fn format_text(e: &Entry) -> String {
    let mut out = String::with_capacity(160);
    push_rfc3339_millis(&mut out, e.time);
    out.push(' ');
    out.push_str(e.channel.as_str());
    for field in [e.remote.as_deref(), e.key.as_deref(), Some(&e.operation)] {
        out.push(' ');
        push_text_field(&mut out, field);
    }
    out.push(' ');
    match (&e.bucket, &e.object, &e.info_hash) {
        // Allocates for S3 lines only; tracker lines name an info-hash.
        (Some(b), Some(o), _) => push_text_field(&mut out, Some(&format!("{b}/{o}"))),
        (Some(b), None, _) => push_text_field(&mut out, Some(b)),
        (None, _, Some(h)) => push_text_field(&mut out, Some(h)),
        _ => push_text_field(&mut out, None),
    }
    out.push(' ');
    push_text_field(&mut out, Some(&e.status));
    let _ = write!(
        out,
        " {} {} {:.3} ",
        e.bytes_out,
        e.bytes_in,
        e.duration.as_secs_f64() * 1000.0
    );
    push_text_field(&mut out, e.request_id.as_deref());
    out
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
    shared: Arc<Shared>,
    json: bool,
}

/// What the requests and the writer thread share.
struct Shared {
    waiting: Mutex<Waiting>,
    /// Signalled when lines arrive in an empty buffer, when [`BATCH_BYTES`] are waiting, and
    /// when the log closes.
    arrived: Condvar,
    /// Taken while a batch is written, before the batch is taken, so batches go out in order.
    out: Mutex<std::io::BufWriter<Box<dyn Write + Send>>>,
}

#[derive(Default)]
struct Waiting {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes out what is waiting. Returns false once the log is closed and nothing is left.
    fn write_batch(&self, spare: &mut Vec<u8>) -> bool {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (lost, open) = {
            let mut w = self.waiting();
            spare.clear();
            std::mem::swap(&mut w.lines, spare);
            (std::mem::take(&mut w.dropped), !w.closed)
        };
        let _ = out.write_all(spare);
        if lost > 0 {
            let _ = writeln!(
                out,
                "access-log: {lost} lines dropped (the log could not keep up)"
            );
        }
        let _ = out.flush();
        open || !spare.is_empty()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.waiting().closed = true;
        self.shared.arrived.notify_one();
    }
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
        Self::start(out, json)
    }

    /// Starts the writer thread on `out`.
    fn start(out: Box<dyn Write + Send>, json: bool) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting::default()),
            arrived: Condvar::new(),
            out: Mutex::new(std::io::BufWriter::with_capacity(64 << 10, out)),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(&writer))?;
        Ok(Self {
            inner: Some(Arc::new(Inner { shared, json })),
        })
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Adds `entry`'s line to the waiting batch; never blocks on the log's file or pipe.
    pub fn record(&self, entry: &Entry) {
        let Some(inner) = &self.inner else {
            return;
        };
        let line = if inner.json {
            format_json(entry)
        } else {
            format_text(entry)
        };
        let mut w = inner.shared.waiting();
        let before = w.lines.len();
        if before + line.len() + 1 > MAX_WAITING {
            w.dropped += 1;
            return;
        }
        w.lines.extend_from_slice(line.as_bytes());
        w.lines.push(b'\n');
        let wake = before == 0 || (before < BATCH_BYTES && w.lines.len() >= BATCH_BYTES);
        drop(w);
        if wake {
            inner.shared.arrived.notify_one();
        }
    }

    /// Writes out every line recorded so far (the server calls it when it stops).
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.shared.write_batch(&mut Vec::new());
        }
    }
}

/// The writer thread: waits for a line, lets a batch gather for up to [`BATCH_WAIT`] (less
/// when [`BATCH_BYTES`] arrive first), writes it, until the log is closed and written out.
fn write_batches(shared: &Shared) {
    let mut spare = Vec::new();
    loop {
        {
            let mut w = shared.waiting();
            while w.lines.is_empty() && w.dropped == 0 && !w.closed {
                w = shared
                    .arrived
                    .wait(w)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if !w.closed && w.lines.len() < BATCH_BYTES {
                drop(
                    shared
                        .arrived
                        .wait_timeout(w, BATCH_WAIT)
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
            }
        }
        if !shared.write_batch(&mut spare) {
            return;
        }
        // The buffer of an ordinary batch is reused for the next; one that grew past twice a
        // batch (a burst, or a stalled disk) is freed.
        if spare.capacity() > 2 * BATCH_BYTES {
            spare = Vec::new();
        }
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

    /// A sink the test can hold up, as a stalled disk would.
    #[derive(Clone)]
    struct Held {
        text: Arc<Mutex<Vec<u8>>>,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Held {
        fn new(open: bool) -> Self {
            Self {
                text: Arc::default(),
                open: Arc::new((Mutex::new(open), Condvar::new())),
            }
        }

        fn release(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.text.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl Write for Held {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.text.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn numbered(n: usize) -> Entry {
        let mut e = sample();
        e.request_id = Some(format!("R{n}"));
        e
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_once_and_in_order() {
        let sink = Held::new(true);
        let log = AccessLog::start(Box::new(sink.clone()), false).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..5000 {
                        log.record(&numbered(t * 10_000 + i));
                    }
                });
            }
        });
        // Recorded lines are all out once flush returns.
        log.flush();
        let lines = sink.lines();
        assert_eq!(lines.len(), 20_000);
        let mut last = [None; 4];
        for line in &lines {
            assert_eq!(line.split(' ').count(), 11, "{line}");
            let n: usize = line.rsplit_once(" R").unwrap().1.parse().unwrap();
            let (t, i) = (n / 10_000, n % 10_000);
            assert!(
                last[t].is_none_or(|prev| prev < i),
                "thread {t}: {i} after {last:?}"
            );
            last[t] = Some(i);
        }
        // Dropping the last handle writes out the rest.
        log.record(&numbered(99));
        drop(log);
        for _ in 0..200 {
            if sink.lines().len() == 20_001 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.lines().len(), 20_001);
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_instead_of_blocking() {
        let sink = Held::new(false);
        let log = AccessLog::start(Box::new(sink.clone()), false).unwrap();
        // Lines of the longest kind: the buffer holds at least this many.
        let line = format_text(&numbered(999_999)).len() + 1;
        let fits = MAX_WAITING / line;
        let started = std::time::Instant::now();
        // The first lines may be in the writer's hands already; the rest fill the buffer.
        for i in 0..2 * fits {
            log.record(&numbered(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "recording never waits"
        );
        sink.release();
        log.flush();
        let lines = sink.lines();
        let dropped = lines
            .iter()
            .find_map(|l| l.strip_prefix("access-log: "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .expect("a line counts the dropped ones");
        // Every line is either written or counted.
        assert!(dropped > 0);
        assert_eq!(lines.len() - 1 + dropped, 2 * fits);
    }
}
