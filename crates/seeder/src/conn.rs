//! One peer connection's IO around a [`Session`].
//!
//! The reading side (this task) does the handshake, then reads frames into a buffer whose
//! size is capped by the torrent's largest legitimate message, hands each parsed message to the
//! session and queues what comes out. A writer task owns the socket's write half: it batches
//! queued buffers into vectored writes, sends a keep-alive when nothing else went out for a
//! while, and gives up on a peer that stops reading. Block reads from the [`Library`] run a
//! few at a time, each behind the rate limiters, and complete in request order.
//!
//! Once a second the connection looks after itself: it reports whether it is busy to its slot,
//! drops a peer that requested nothing for the inactive timeout while not waiting for an
//! upload slot, and asks the library whether the peer may still download the torrent.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use seedbucket_wire::peer::{
    Handshake, HandshakePrefix, Message, PeerError, encode_metadata_data_header,
    encode_piece_header, frame_size, metadata_piece_range, recommended_max_message_len,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};

use crate::choke::{Choker, PeerKey};
use crate::encryption::{self, PeerRead, PeerWrite, read_more};
use crate::listener::Shared;
use crate::rate::RateLimiter;
use crate::session::{Block, Output, Session, SessionConfig, Violation, our_reserved};
use crate::slots::Slot;
use crate::{Library, SeedTorrent};

/// Block reads in flight per peer.
const MAX_IN_FLIGHT: usize = 16;
/// Buffers queued for the writer per peer (a block takes two: header and data).
const WRITE_QUEUE: usize = 16;
/// Buffers the writer gathers into one vectored write.
const WRITE_BATCH: usize = 32;
const KEEP_ALIVE: &[u8] = &[0, 0, 0, 0];
/// How often a connection checks its inactivity and access.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("bad handshake: {0}")]
    Handshake(PeerError),
    #[error("encrypted handshake failed: {0}")]
    Encryption(seedbucket_wire::peer::mse::MseError),
    #[error("plain handshake refused: encryption is required")]
    PlainRefused,
    #[error("the handshake inside the encrypted stream names another torrent")]
    InfoHashMismatch,
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("unknown or refused info-hash")]
    Refused,
    #[error("the library's torrent has an unusable geometry")]
    BadTorrent,
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("peer closed the connection")]
    Closed,
    #[error("shutting down")]
    Shutdown,
    #[error("a newer connection took the slot of this idle one")]
    Evicted,
    #[error("requested nothing for {0:?}")]
    Inactive(Duration),
    #[error("no longer allowed to download the torrent")]
    Revoked,
    #[error(transparent)]
    Violation(#[from] Violation),
    #[error("library read failed: {0}")]
    Read(io::Error),
    #[error("library returned {got} bytes for a block of {want}")]
    ShortRead { got: usize, want: u32 },
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Serves one accepted TCP connection until it ends; never panics, errors are logged.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    run_halves(
        Box::new(rd),
        Box::new(wr),
        peer,
        shared,
        shutdown,
        slot,
        "tcp",
    )
    .await;
}

/// What one connection did, for its access-log line.
#[derive(Default)]
struct Tally {
    info_hash: std::sync::OnceLock<[u8; 20]>,
    uploaded: std::sync::atomic::AtomicU64,
}

/// The access-log word for how a connection ended.
fn ending(result: &Result<(), ConnError>) -> &'static str {
    match result {
        Ok(()) | Err(ConnError::Closed) => "closed",
        Err(ConnError::Shutdown) => "shutdown",
        Err(ConnError::Evicted) => "evicted",
        Err(ConnError::Inactive(_)) => "inactive",
        Err(ConnError::Revoked) => "revoked",
        Err(ConnError::Refused | ConnError::InfoHashMismatch) => "refused",
        Err(ConnError::Timeout(_)) => "timeout",
        Err(
            ConnError::Handshake(_)
            | ConnError::Encryption(_)
            | ConnError::PlainRefused
            | ConnError::SelfConnection,
        ) => "bad-handshake",
        Err(ConnError::Violation(_)) => "violation",
        Err(ConnError::Io(_)) => "io-error",
        Err(
            ConnError::Read(_)
            | ConnError::ShortRead { .. }
            | ConnError::BadTorrent
            | ConnError::Encode(_),
        ) => "server-error",
    }
}

/// Serves one connection, given as its two halves (TCP or uTP), until it ends.
pub(crate) async fn run_halves(
    rd: PeerRead,
    wr: PeerWrite,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    slot: Slot,
    transport: &'static str,
) {
    let started = std::time::Instant::now();
    let tally = Tally::default();
    let result = tokio::select! {
        r = serve_peer(rd, wr, peer, &shared, shutdown, &slot, &tally) => r,
        () = slot.evicted() => Err(ConnError::Evicted),
    };
    if shared.access_log.is_on() {
        use seedbucket_access_log::{Channel, Entry};
        let mut e = Entry::new(Channel::Peer, transport);
        e.time = std::time::SystemTime::now() - started.elapsed();
        e.remote = Some(peer.to_string());
        e.info_hash = tally.info_hash.get().map(hex::encode);
        e.status = ending(&result).to_owned();
        e.bytes_out = tally.uploaded.load(Ordering::Relaxed);
        e.duration = started.elapsed();
        shared.access_log.record(&e);
    }
    match result {
        Ok(()) | Err(ConnError::Closed | ConnError::Shutdown) => {
            tracing::debug!(%peer, "peer connection closed");
        }
        Err(e) => {
            let counter = match e {
                ConnError::Evicted => Some(&shared.evicted),
                ConnError::Inactive(_) => Some(&shared.inactive),
                _ => None,
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%peer, error = %e, "peer dropped");
        }
    }
}

/// Unregisters from the choker and stops the writer when the connection ends, however it ends.
struct Cleanup<'a> {
    choker: &'a Choker,
    key: PeerKey,
    writer: tokio::task::JoinHandle<io::Result<()>>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.choker.unregister(self.key);
        self.writer.abort();
    }
}

/// What woke the main loop.
enum Event {
    Shutdown,
    WriterGone,
    Choke(bool),
    Block(io::Result<Bytes>),
    Read(io::Result<usize>),
    Idle,
    Housekeeping,
}

async fn serve_peer(
    rd: PeerRead,
    wr: PeerWrite,
    peer: SocketAddr,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
    slot: &Slot,
    tally: &Tally,
) -> Result<(), ConnError> {
    let opts = &shared.options;
    let deadline = Instant::now() + opts.handshake_timeout;
    // A plain handshake, or an encrypted exchange first (then the same inside it).
    let opened = timeout_at(
        deadline,
        encryption::open(rd, wr, shared.library.as_ref(), opts.encryption),
    )
    .await
    .map_err(|_| ConnError::Timeout("handshake"))??;
    let (mut rd, wr, mut rbuf) = (opened.read, opened.write, opened.received);
    match opened.method {
        Some(seedbucket_wire::peer::mse::CryptoMethod::Plaintext) => {
            shared.encrypted_plaintext.fetch_add(1, Ordering::Relaxed);
        }
        Some(seedbucket_wire::peer::mse::CryptoMethod::Rc4) => {
            shared.encrypted_rc4.fetch_add(1, Ordering::Relaxed);
        }
        None => {}
    }

    // Handshake: the 48-byte prefix names the torrent; we answer before the peer id arrives
    // (some clients wait for ours before sending theirs).
    let prefix = timeout_at(deadline, async {
        loop {
            match HandshakePrefix::parse(&rbuf) {
                Ok(Some((p, used))) => {
                    rbuf.advance(used);
                    return Ok(p);
                }
                Ok(None) => read_more(&mut rd, &mut rbuf).await?,
                Err(e) => return Err(ConnError::Handshake(e)),
            }
        }
    })
    .await
    .map_err(|_| ConnError::Timeout("handshake"))??;
    let _ = tally.info_hash.set(prefix.info_hash);
    if opened
        .encrypted_for
        .is_some_and(|skey| skey != prefix.info_hash)
    {
        return Err(ConnError::InfoHashMismatch);
    }
    let torrent = timeout_at(deadline, shared.library.lookup(&prefix.info_hash, peer))
        .await
        .map_err(|_| ConnError::Timeout("lookup"))?
        .ok_or(ConnError::Refused)?;
    let config = SessionConfig {
        peer_reserved: prefix.reserved,
        peer_ip: Some(peer.ip()),
        max_request_queue: opts.max_request_queue,
        trees: Arc::clone(&shared.trees),
    };
    let Some(mut session) = Session::new(Arc::clone(&torrent), &config) else {
        tracing::warn!(key = %torrent.key, "torrent with an unusable geometry");
        return Err(ConnError::BadTorrent);
    };

    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (key, mut unchoked) = shared.choker.register(&torrent.key);
    let _cleanup = Cleanup {
        choker: &shared.choker,
        key,
        writer: tokio::spawn(write_loop(wr, rx, opts.keepalive_every, opts.idle_timeout)),
    };
    let ours = Handshake {
        reserved: our_reserved(&torrent),
        info_hash: reply_info_hash(&torrent, &prefix),
        peer_id: shared.peer_id,
    };
    let send_timeout = opts.idle_timeout;
    send(&tx, Bytes::copy_from_slice(&ours.encode()), send_timeout).await?;

    let peer_id = timeout_at(deadline, async {
        while rbuf.len() < 20 {
            read_more(&mut rd, &mut rbuf).await?;
        }
        Ok::<_, ConnError>(rbuf.split_to(20))
    })
    .await
    .map_err(|_| ConnError::Timeout("handshake"))??;
    if peer_id[..] == shared.peer_id[..] {
        return Err(ConnError::SelfConnection);
    }
    tracing::debug!(
        %peer,
        key = %torrent.key,
        peer_id = %String::from_utf8_lossy(&peer_id),
        fast = session.fast(),
        encryption = ?opened.method,
        "peer handshake"
    );

    let io = Io {
        tx: &tx,
        shared,
        key,
        torrent: &torrent,
        send_timeout,
        tally,
    };
    let mut out = Vec::new();
    session.start(&mut out);
    io.emit(&mut out).await?;

    let max_len = recommended_max_message_len(session.piece_count());
    let per_peer = RateLimiter::new(opts.upload_rate_limit_per_peer).map(Arc::new);
    let mut in_flight: FuturesOrdered<BoxFuture<'static, io::Result<Bytes>>> =
        FuturesOrdered::new();
    let idle = tokio::time::sleep(opts.idle_timeout);
    tokio::pin!(idle);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut activity = PeerActivity::new(opts.inactive_timeout, opts.access_recheck_every);

    // Frames that arrived with the handshake.
    handle_frames(&mut rbuf, max_len, &mut session, &io).await?;
    activity.after_frames(&session, slot);
    loop {
        while in_flight.len() < MAX_IN_FLIGHT {
            let Some(block) = session.next_block() else {
                break;
            };
            in_flight.push_back(read_block(
                Arc::clone(&shared.library),
                Arc::clone(&torrent),
                per_peer.clone(),
                shared.total_limit.clone(),
                block,
            ));
        }
        // Room for the rest of the current frame (its size is known once 4 bytes are in),
        // never more than the largest frame allowed.
        let need = match frame_size(&rbuf, max_len).map_err(Violation::from)? {
            Some(size) => size.saturating_sub(rbuf.len()),
            None => 4,
        };
        rbuf.reserve(need.max(4096));

        let event = tokio::select! {
            r = shutdown.changed() => match r {
                Ok(()) if !*shutdown.borrow() => continue,
                _ => Event::Shutdown,
            },
            () = tx.closed() => Event::WriterGone,
            r = unchoked.changed() => match r {
                Ok(()) => Event::Choke(!*unchoked.borrow_and_update()),
                Err(_) => Event::Shutdown,
            },
            Some(r) = in_flight.next(), if !in_flight.is_empty() => Event::Block(r),
            r = rd.read_buf(&mut rbuf) => Event::Read(r),
            () = &mut idle => Event::Idle,
            _ = housekeeping.tick() => Event::Housekeeping,
        };
        match event {
            Event::Shutdown => return Err(ConnError::Shutdown),
            Event::WriterGone => return Err(ConnError::Closed),
            Event::Idle => return Err(ConnError::Timeout("idle")),
            Event::Choke(choked) => {
                session.set_choked(choked, &mut out);
                io.emit(&mut out).await?;
                if !choked {
                    // A fresh slot: the peer gets a whole inactive timeout to use it.
                    activity.active(slot);
                }
            }
            Event::Housekeeping => {
                slot.set_busy(session.busy());
                if let Some(quiet) = activity.inactive_for(&session) {
                    return Err(ConnError::Inactive(quiet));
                }
                if activity.access_due() && !shared.library.still_allowed(&torrent, peer).await {
                    return Err(ConnError::Revoked);
                }
            }
            Event::Block(r) => {
                let data = r.map_err(ConnError::Read)?;
                if let Some(block) = session.block_done() {
                    io.send_block(block, data).await?;
                }
            }
            Event::Read(r) => {
                if r? == 0 {
                    return Err(ConnError::Closed);
                }
                idle.as_mut()
                    .reset(Instant::now() + shared.options.idle_timeout);
                handle_frames(&mut rbuf, max_len, &mut session, &io).await?;
                activity.after_frames(&session, slot);
            }
        }
    }
}

/// The info-hash our handshake names: the peer's, except that a v2-capable peer naming a
/// hybrid torrent by its v1 hash (the upgrade bit set, BEP 52) is answered with the truncated
/// v2 hash, which upgrades the connection to v2. libtorrent relies on this: over an encrypted
/// handshake it names a hybrid torrent by its v1 hash while expecting the v2 one back, and
/// drops a reply naming the v1 hash as "invalid info-hash".
fn reply_info_hash(torrent: &SeedTorrent, theirs: &HandshakePrefix) -> [u8; 20] {
    match (torrent.info_hash_v1, torrent.info_hash_v2_truncated()) {
        (Some(v1), Some(v2)) if v1 == theirs.info_hash && theirs.reserved.v2_upgrade() => v2,
        _ => theirs.info_hash,
    }
}

/// When a peer last did something useful, and when its access was last checked.
struct PeerActivity {
    inactive_timeout: Duration,
    recheck_every: Duration,
    last_active: Instant,
    requests_seen: u64,
    access_checked: Instant,
}

impl PeerActivity {
    fn new(inactive_timeout: Duration, recheck_every: Duration) -> Self {
        let now = Instant::now();
        Self {
            inactive_timeout,
            recheck_every,
            last_active: now,
            requests_seen: 0,
            access_checked: now,
        }
    }

    fn active(&mut self, slot: &Slot) {
        self.last_active = Instant::now();
        slot.touch();
    }

    /// Notes new requests, if the frames just handled held any.
    fn after_frames(&mut self, session: &Session, slot: &Slot) {
        if session.requests_seen() != self.requests_seen {
            self.requests_seen = session.requests_seen();
            self.active(slot);
        }
        slot.set_busy(session.busy());
    }

    /// `Some(how long)` when the peer should be dropped for inactivity: it has nothing
    /// outstanding, is not waiting for a slot, and requested nothing for the timeout. Waiting
    /// in line is not the peer's fault: the clock restarts when it is unchoked.
    fn inactive_for(&self, session: &Session) -> Option<Duration> {
        if session.busy() || session.waiting() {
            return None;
        }
        let quiet = self.last_active.elapsed();
        (quiet >= self.inactive_timeout).then_some(quiet)
    }

    /// Whether the peer's access is due for a check (and counts it as checked).
    fn access_due(&mut self) -> bool {
        if self.access_checked.elapsed() < self.recheck_every {
            return false;
        }
        self.access_checked = Instant::now();
        true
    }
}

/// Parses every complete frame in `rbuf` and acts on it, one at a time, so a burst of
/// requests never queues more output than the writer's channel holds.
async fn handle_frames(
    rbuf: &mut BytesMut,
    max_len: usize,
    session: &mut Session,
    io: &Io<'_>,
) -> Result<(), ConnError> {
    let mut out = Vec::new();
    while let Some(size) = frame_size(rbuf, max_len).map_err(Violation::from)? {
        if rbuf.len() < size {
            break;
        }
        let frame = rbuf.split_to(size).freeze();
        let Some((msg, _)) = Message::parse_bytes(&frame, max_len).map_err(Violation::from)? else {
            // frame_size said the frame is complete.
            return Err(ConnError::Violation(Violation::Unexpected(
                "incomplete frame",
            )));
        };
        session.on_message(msg, &mut out)?;
        io.emit(&mut out).await?;
    }
    Ok(())
}

/// Reads one block behind the per-peer limiter, then the total one (so a slow peer never holds
/// the shared budget while it waits for its own).
fn read_block(
    library: Arc<dyn Library>,
    torrent: Arc<SeedTorrent>,
    per_peer: Option<Arc<RateLimiter>>,
    total: Option<Arc<RateLimiter>>,
    block: Block,
) -> BoxFuture<'static, io::Result<Bytes>> {
    Box::pin(async move {
        let n = u64::from(block.length);
        if let Some(l) = &per_peer {
            l.acquire(n).await;
        }
        if let Some(l) = &total {
            l.acquire(n).await;
        }
        library.read(&torrent, block.offset, block.length).await
    })
}

/// The writing side as the main loop sees it.
struct Io<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    shared: &'a Shared,
    key: PeerKey,
    torrent: &'a SeedTorrent,
    send_timeout: Duration,
    tally: &'a Tally,
}

async fn send(tx: &mpsc::Sender<Bytes>, b: Bytes, wait: Duration) -> Result<(), ConnError> {
    match timeout(wait, tx.send(b)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ConnError::Closed),
        Err(_) => Err(ConnError::Timeout("peer not reading")),
    }
}

impl Io<'_> {
    async fn send(&self, b: Bytes) -> Result<(), ConnError> {
        send(self.tx, b, self.send_timeout).await
    }

    /// Carries out the session's outputs in order.
    async fn emit(&self, out: &mut Vec<Output>) -> Result<(), ConnError> {
        for o in out.drain(..) {
            match o {
                Output::Send(m) => {
                    let bytes = m.to_vec().map_err(|e| ConnError::Encode(e.to_string()))?;
                    self.send(Bytes::from(bytes)).await?;
                }
                Output::Metadata { ext_id, piece } => {
                    let info = &self.torrent.info;
                    let header = encode_metadata_data_header(ext_id, piece, info.len())
                        .map_err(|e| ConnError::Encode(e.to_string()))?;
                    let range = metadata_piece_range(info.len(), piece)
                        .map_err(|e| ConnError::Encode(e.to_string()))?;
                    self.send(Bytes::from(header)).await?;
                    self.send(info.slice(range)).await?;
                }
                Output::Interest(interested) => {
                    self.shared.choker.interested(self.key, interested);
                }
            }
        }
        Ok(())
    }

    /// The 13-byte piece header, then the block as the library returned it.
    async fn send_block(&self, block: Block, data: Bytes) -> Result<(), ConnError> {
        if data.len() != block.length as usize {
            return Err(ConnError::ShortRead {
                got: data.len(),
                want: block.length,
            });
        }
        let header = encode_piece_header(block.index, block.begin, block.length)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.send(Bytes::copy_from_slice(&header)).await?;
        self.send(data).await?;
        let n = u64::from(block.length);
        self.shared.library.uploaded(self.torrent, n);
        self.shared.uploaded.fetch_add(n, Ordering::Relaxed);
        self.tally.uploaded.fetch_add(n, Ordering::Relaxed);
        self.shared.blocks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The writer task: gathers queued buffers into vectored writes, sends keep-alives when idle,
/// and fails when one write makes no progress for `stall`.
async fn write_loop(
    mut wr: PeerWrite,
    mut rx: mpsc::Receiver<Bytes>,
    keepalive: Duration,
    stall: Duration,
) -> io::Result<()> {
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    loop {
        match timeout(keepalive, rx.recv()).await {
            Ok(Some(b)) => batch.push(b),
            Ok(None) => break,
            Err(_) => batch.push(Bytes::from_static(KEEP_ALIVE)),
        }
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let slices: Vec<io::IoSlice<'_>> = batch.iter().map(|b| io::IoSlice::new(b)).collect();
            let mut n = match timeout(stall, wr.write_vectored(&slices)).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            // Drop what was written: whole buffers, then part of the next.
            let mut done = 0;
            for b in &mut batch {
                if n >= b.len() {
                    n -= b.len();
                    done += 1;
                } else {
                    b.advance(n);
                    break;
                }
            }
            batch.drain(..done);
        }
        // A wrapped writer (RC4) may hold what it accepted until flushed.
        match timeout(stall, wr.flush()).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}
