//! The HTTP tracker on the S3 port: `/announce?sb_token=<token>&info_hash=…` (and `/scrape`),
//! the form torrents carry, since libtorrent's SSRF mitigation accepts a tracker on a private or
//! loopback address only when its path is exactly `/announce`; a request there is a tracker
//! request only when it has an `info_hash` (no S3 request to a bucket named `announce` has one).
//! `/_seedbucket/tracker/[<token>/]announce` and `…/scrape` work too.
//!
//! Only info-hashes of torrents this server issued are tracked (both hashes of a hybrid lead to
//! one swarm, keyed by its primary hash), while one of their objects still serves them
//! (`torrent_sources`). A private torrent's announce must carry a token issued to a key that
//! still exists and may read the token's object; without one it is refused as an unknown
//! info-hash is. Every refusal is a bencoded `failure reason` with status 200, as clients
//! expect, never an HTML page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Response, header};
use s3s::Body;
use seedbucket_store::pieces::{IssuedTorrent, TorrentSources};
use seedbucket_tracker::{PeerAnnounce, PeerSink};
use seedbucket_wire::tracker::http::{encode_failure, encode_scrape, parse_announce, parse_scrape};

use crate::Seedbucket;
use crate::stats::Transport;
use crate::tokens::TokenGrant;
use crate::torrent_sources::Resolved;

/// The refusal of an info-hash this tracker does not serve, and of a private torrent announced
/// without a genuine token: the same words, so that a guess learns nothing.
const UNREGISTERED: &str =
    "unregistered torrent: this tracker serves torrents issued by this server";

/// Cache keys made of several strings, joined so that no two lists give one key: each part but
/// the last is prefixed by its length. Looked up through [`with_joined`], which joins into a
/// buffer this thread reuses, so a cache hit allocates nothing (announces look up two such
/// caches each).
fn push_joined(out: &mut String, parts: &[&str]) {
    use std::fmt::Write as _;
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        if i < last {
            let _ = write!(out, "{}:", part.len());
        }
        out.push_str(part);
    }
}

fn joined(parts: &[&str]) -> String {
    let mut out = String::new();
    push_joined(&mut out, parts);
    out
}

/// Runs `f` on `parts` joined (see [`push_joined`]) in this thread's buffer. `f` must not call
/// it again.
fn with_joined<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static JOINED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    JOINED.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            push_joined(&mut buf, parts);
            f(&buf)
        }
        Err(_) => f(&joined(parts)),
    })
}

/// The sources of an info-hash, and when they were read.
type CachedSources = (Arc<TorrentSources>, Instant);

/// What an announce of one info-hash with one token counts for: the torrent record it is
/// admitted to, its swarm, and what the token (of a private torrent) lets through.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) rec: IssuedTorrent,
    /// The swarm it goes to (`None` if the record's info-hash is malformed).
    pub(crate) swarm: Option<[u8; 20]>,
    /// The token's grant as the tracker keeps an admitted address
    /// ([`TokenGrant::to_admission`]); `None` without a genuine token.
    pub(crate) admission: Option<String>,
}

impl Admitted {
    fn new(rec: IssuedTorrent, grant: Option<&TokenGrant>) -> Self {
        Self {
            swarm: rec.swarm_key(),
            admission: grant.map(TokenGrant::to_admission),
            rec,
        }
    }
}

/// An answer of [`Seedbucket::admitted`] for one token, reused while its `generation` holds and
/// for at most [`AdmissionCache::DECISION_TTL`].
struct Decision {
    token: Option<Box<str>>,
    admitted: Arc<Admitted>,
    at: Instant,
    generation: Generation,
}

/// A map consulted on every announce, keyed by what clients send (info-hash, address): a
/// per-map random seed like std's default hasher, at a fraction of SipHash's cost.
type AnnounceMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What an answer of [`Seedbucket::admitted`] was worked out from: (times the remembered
/// readers were forgotten, object writes through this node). Either moving makes it stale.
type Generation = (u64, u64);

/// What the tracker looks up on every announce, kept in memory for a few seconds: the sources of
/// an info-hash (read again at once when they refuse an announce, so a new source counts
/// immediately) and whether a key may read an object (so revoking a key or an ACL takes
/// effect quickly); and, for a second, the whole answer for an info-hash and token.
#[derive(Default)]
pub(crate) struct AdmissionCache {
    /// Info-hash → the answers for its tokens (at most [`Self::DECISIONS_PER_HASH`]).
    decisions: Mutex<AnnounceMap<[u8; 20], Vec<Decision>>>,
    /// Times [`Self::forget_readers`] ran.
    readers_forgotten: std::sync::atomic::AtomicU64,
    torrents: Mutex<HashMap<[u8; 20], CachedSources>>,
    /// [access key or "" for anyone, bucket, key, version] joined ([`push_joined`]) → whether
    /// that key may read that object version, and when checked.
    readers: Mutex<HashMap<String, (bool, Instant)>>,
    /// Tokens already verified, [token, info-hash] joined → what they let through: saves an
    /// HMAC per announce.
    tokens: Mutex<HashMap<String, TokenGrant>>,
    /// UDP connection ids by client IP: (window, id for that window, id for the one before).
    connection_ids: Mutex<AnnounceMap<std::net::IpAddr, (u64, u64, u64)>>,
}

impl AdmissionCache {
    const MAX_ENTRIES: usize = 100_000;
    const READER_TTL: Duration = Duration::from_secs(5);
    /// A whole answer is reused no longer than the object records it was made from are
    /// (everything else it rests on is kept longer), so caching it adds at most this much to
    /// how late a change made elsewhere (another gateway node without Redis, or straight to the
    /// backend) reaches the tracker. A change through this node, or announced to it, makes it
    /// stale at once (see [`Generation`]).
    const DECISION_TTL: Duration = seedbucket_store::RECENT_HEADS_REUSED_FOR;
    /// Tokens whose answers are kept per info-hash (a private torrent has one per key that
    /// asked for it); past that, the oldest answer makes room.
    const DECISIONS_PER_HASH: usize = 16;

    fn decision(
        &self,
        info_hash: &[u8; 20],
        token: Option<&str>,
        generation: Generation,
    ) -> Option<Arc<Admitted>> {
        let m = self.decisions.lock().ok()?;
        // An open torrent's answer is kept without a token (see `remember_decision`) and holds
        // for any.
        let d = m
            .get(info_hash)?
            .iter()
            .find(|d| d.token.is_none() || d.token.as_deref() == token)?;
        (d.generation == generation && d.at.elapsed() < Self::DECISION_TTL)
            .then(|| d.admitted.clone())
    }

    fn remember_decision(
        &self,
        info_hash: [u8; 20],
        token: Option<&str>,
        generation: Generation,
        admitted: Arc<Admitted>,
    ) {
        let Ok(mut m) = self.decisions.lock() else {
            return;
        };
        if m.len() >= Self::MAX_ENTRIES {
            m.clear();
        }
        // A token only matters to a private torrent: an open one's answer is kept once, not
        // once per token (any text passes for a token there, so a client could otherwise fill
        // the cache with made-up ones).
        let token = token.filter(|_| admitted.rec.private);
        let answers = m.entry(info_hash).or_default();
        let decision = Decision {
            token: token.map(Box::from),
            admitted,
            at: Instant::now(),
            generation,
        };
        if let Some(d) = answers.iter_mut().find(|d| d.token.as_deref() == token) {
            *d = decision;
        } else if answers.len() < Self::DECISIONS_PER_HASH {
            answers.push(decision);
        } else if let Some(oldest) = answers.iter_mut().min_by_key(|d| d.at) {
            *oldest = decision;
        }
    }

    fn sources(&self, h: &[u8; 20]) -> Option<Arc<TorrentSources>> {
        let m = self.torrents.lock().ok()?;
        let (sources, at) = m.get(h)?;
        (at.elapsed() < Self::READER_TTL).then(|| sources.clone())
    }

    fn remember_sources(&self, h: [u8; 20], sources: TorrentSources) -> Arc<TorrentSources> {
        let sources = Arc::new(sources);
        if let Ok(mut m) = self.torrents.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(h, (sources.clone(), Instant::now()));
        }
        sources
    }

    /// What a tracker token for `info_hash` lets through, verified once and then remembered.
    fn token_grant(
        &self,
        keys: &crate::tokens::TokenKey,
        token: &str,
        info_hash: &str,
    ) -> Option<TokenGrant> {
        let parts = [token, info_hash];
        let known = with_joined(&parts, |k| {
            self.tokens.lock().ok().and_then(|m| m.get(k).cloned())
        });
        if known.is_some() {
            return known;
        }
        let grant = keys.check_tracker_token(token, info_hash)?;
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(joined(&parts), grant.clone());
        }
        Some(grant)
    }

    /// The UDP connection ids valid now for `ip`: this window's and the previous one's.
    pub(crate) fn connection_ids(
        &self,
        keys: &crate::tokens::TokenKey,
        ip: std::net::IpAddr,
        window: u64,
    ) -> (u64, u64) {
        if let Ok(m) = self.connection_ids.lock()
            && let Some(&(w, cur, prev)) = m.get(&ip)
            && w == window
        {
            return (cur, prev);
        }
        let cur = keys.connection_id(&ip, window);
        let prev = keys.connection_id(&ip, window.saturating_sub(1));
        if let Ok(mut m) = self.connection_ids.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(ip, (window, cur, prev));
        }
        (cur, prev)
    }

    fn reader(&self, parts: &[&str]) -> Option<bool> {
        with_joined(parts, |k| {
            let m = self.readers.lock().ok()?;
            let (allowed, at) = m.get(k)?;
            (at.elapsed() < Self::READER_TTL).then_some(*allowed)
        })
    }

    /// Forgets every remembered answer of who may read what.
    fn forget_readers(&self) {
        if let Ok(mut m) = self.readers.lock() {
            m.clear();
        }
        self.readers_forgotten
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn remember_reader(&self, parts: &[&str], allowed: bool) {
        if let Ok(mut m) = self.readers.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(joined(parts), (allowed, Instant::now()));
        }
    }
}

impl Seedbucket {
    /// Forgets who may read what whenever a key, a bucket's or an object's access rules
    /// change, here or (with Redis change notices) on another node, instead of waiting out the
    /// few seconds those answers are kept.
    pub(crate) fn drop_stale_answers_on_changes(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut changes = self.store.subscribe_changes();
        let admission = Arc::downgrade(&self.admission);
        runtime.spawn(async move {
            loop {
                let stale = match changes.recv().await {
                    Ok(c) => {
                        c.key.is_empty()
                            || c.key == "keys.json"
                            || c.key.starts_with("buckets/")
                            || c.key.starts_with("objects/")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(admission) = admission.upgrade() else {
                    return;
                };
                if stale {
                    admission.forget_readers();
                }
            }
        });
    }

    /// Whether the holder of `access_key` (`None`: anyone) may still read the object version
    /// `torrent` was issued for: what a torrent's tracker and webseed URLs are worth. False once
    /// the object changed (a torrent names one version). Cached for a few seconds.
    pub(crate) async fn may_read(&self, access_key: Option<&str>, torrent: &IssuedTorrent) -> bool {
        let parts = [
            access_key.unwrap_or_default(),
            torrent.bucket.as_str(),
            torrent.key.as_str(),
            torrent.version.as_str(),
        ];
        if let Some(allowed) = self.admission.reader(&parts) {
            return allowed;
        }
        let allowed = self.may_read_now(access_key, torrent).await;
        self.admission.remember_reader(&parts, allowed);
        allowed
    }

    /// [`Seedbucket::may_read`] asked of the store and the keys now, without the cache (the
    /// seeder's re-checks of connected peers, which must see a revocation at once).
    pub(crate) async fn may_read_now(
        &self,
        access_key: Option<&str>,
        torrent: &IssuedTorrent,
    ) -> bool {
        let (bucket, key) = (torrent.bucket.as_str(), torrent.key.as_str());
        let principal = match access_key.map(|ak| self.keys.get(ak)) {
            None => Some(crate::access::Principal::Anonymous),
            Some(Some(ak)) => Some(crate::access::Principal::User(ak)),
            Some(None) => None,
        };
        match principal {
            None => false,
            Some(p) => {
                let Ok(b) = self.store.bucket(bucket).await else {
                    return false;
                };
                // The current version is read as GetObject reads it; an older version of a
                // versioned bucket as a read naming that version (`s3:GetObjectVersion`).
                let (rec, current) = match self.store.head_object(bucket, key).await {
                    Ok(rec) if rec.version == torrent.version => (rec, true),
                    _ => {
                        let exact = seedbucket_store::Which::Exact(&torrent.version);
                        match self.store.head_object_at(bucket, key, exact).await {
                            Ok(rec) => (rec, false),
                            Err(_) => return false,
                        }
                    }
                };
                let which = if current {
                    seedbucket_store::Which::Current
                } else {
                    seedbucket_store::Which::VersionId(rec.version_id())
                };
                crate::access::Access::new(p, b).allows_at(
                    crate::access::Action::GetObjectTorrent,
                    Some(key),
                    Some(&rec),
                    which,
                )
            }
        }
    }
}

/// The peer id handed out for a server seeder: seedbucket's client prefix, then 12 digits of
/// a hash of the seeder's address, so that several nodes' seeders have different ids.
fn server_seeder_id(seeder: SocketAddr) -> [u8; 20] {
    thread_local! {
        /// The last seeder asked about and its id: every announce asks about the same few.
        static LAST: std::cell::Cell<Option<(SocketAddr, [u8; 20])>> =
            const { std::cell::Cell::new(None) };
    }
    if let Some((addr, id)) = LAST.get()
        && addr == seeder
    {
        return id;
    }
    let id = seeder_id_of(seeder);
    LAST.set(Some((seeder, id)));
    id
}

fn seeder_id_of(seeder: SocketAddr) -> [u8; 20] {
    use std::io::Write as _;
    // FNV-1a of the address as text: stable across processes and nodes. Written to the stack
    // (every announce hands out every node's seeder).
    let mut text = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let _ = write!(cursor, "{seeder}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    let hash = text[..len].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut id = *b"-SB0100-000000000000";
    let mut digits = hash % 1_000_000_000_000;
    for d in id[8..].iter_mut().rev() {
        *d = b'0' + (digits % 10) as u8;
        digits /= 10;
    }
    id
}

/// The client address of a request that came through `remote`: when `remote` is one of the
/// `trusted` proxies, the last address in `X-Forwarded-For` (the one that proxy appended;
/// earlier ones are whatever the client sent), else `remote` itself.
pub fn forwarded_client(
    remote: SocketAddr,
    headers: &http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> SocketAddr {
    if !trusted.contains(&remote.ip()) {
        return remote;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map_or(remote, |ip| SocketAddr::new(ip, remote.port()))
}

/// The query parameter that carries a private torrent's tracker token.
pub const TOKEN_PARAM: &str = "sb_token";

/// True for `/announce` or `/scrape` requests that are tracker requests.
pub fn is_tracker_request(path: &str, query: &str) -> bool {
    (path == "/announce" || path == "/scrape")
        && query.split('&').any(|p| p.starts_with("info_hash="))
}

pub(crate) fn token_from_query(query: &str) -> Option<std::borrow::Cow<'_, str>> {
    token_from_query_bytes(query.as_bytes())
}

/// [`token_from_query`] of a query as it came (a UDP announce's URL data), not decoded first.
pub(crate) fn token_from_query_bytes(query: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    query.split(|&b| b == b'&').find_map(|p| {
        let v = p.strip_prefix(TOKEN_PARAM.as_bytes())?.strip_prefix(b"=")?;
        // Borrowed from `query` unless it had escapes (tokens are URL-safe: it has none).
        Some(if v.contains(&b'%') {
            percent_encoding::percent_decode(v)
                .decode_utf8_lossy()
                .into_owned()
                .into()
        } else {
            // A token is ASCII: checked as such first (the lossy decoder is several times
            // slower on the way to the same answer).
            std::str::from_utf8(v).map_or_else(|_| String::from_utf8_lossy(v), Into::into)
        })
    })
}

fn bencoded(body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn failure(reason: &str) -> Response<Body> {
    bencoded(encode_failure(reason))
}

/// A reply's peers after the server's own seeders: the swarm's picks, leaving those seeders
/// out (they are listed already) and not counting them against the peers asked for.
struct ServerSeedersFirst<'a, S> {
    peers: &'a mut S,
    /// The server's seeders.
    seeders: &'a [SocketAddr],
    /// How many of them were listed (all but the announcing peer itself).
    listed: usize,
}

impl<S: PeerSink> PeerSink for ServerSeedersFirst<'_, S> {
    fn taken(&self) -> usize {
        self.peers.taken().saturating_sub(self.listed)
    }

    fn take(&mut self, addr: SocketAddr, id: &[u8; 20]) {
        if !self.seeders.contains(&addr) {
            self.peers.take(addr, id);
        }
    }
}

pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Seedbucket {
    /// Drops peers that stopped announcing, in every swarm; the server calls it every minute
    /// (swarms that get announces also expire their own peers on each announce).
    pub async fn expire_tracker_peers(&self) {
        self.tracker.expire(unix_now()).await;
        self.browsers.expire(unix_now());
    }

    /// `rest` is the path after `/_seedbucket/tracker/`.
    pub(crate) async fn tracker(
        &self,
        rest: &str,
        query: &str,
        remote: Option<SocketAddr>,
    ) -> Response<Body> {
        let in_query = token_from_query(query);
        let (token, action) = match rest.rsplit_once('/') {
            Some((token, action)) => (Some(token), action),
            None => (in_query.as_deref(), rest),
        };
        match action {
            "announce" => self.announce(token, query, remote).await,
            "scrape" => self.scrape(token, query).await,
            _ => failure("unknown tracker path; use .../announce or .../scrape"),
        }
    }

    /// The source an announce of `info_hash` counts for, and what its token (for private
    /// torrents) lets through; `Err`: the failure reason.
    pub(crate) async fn admitted(
        &self,
        info_hash: &[u8; 20],
        token: Option<&str>,
    ) -> Result<Arc<Admitted>, &'static str> {
        // Read before the answer is worked out, so that a change meanwhile makes it stale.
        let generation = (
            self.admission
                .readers_forgotten
                .load(std::sync::atomic::Ordering::Acquire),
            self.store.object_writes(),
        );
        if let Some(known) = self.admission.decision(info_hash, token, generation) {
            return Ok(known);
        }
        // Boxed: the lookups of a first announce would otherwise size every announce's future.
        let (rec, grant) = Box::pin(self.admitted_afresh(info_hash, token)).await?;
        let admitted = Arc::new(Admitted::new(rec, grant.as_ref()));
        self.admission
            .remember_decision(*info_hash, token, generation, admitted.clone());
        Ok(admitted)
    }

    /// [`Seedbucket::admitted`], worked out from the (separately cached) sources, token
    /// checks, object records and read permissions.
    async fn admitted_afresh(
        &self,
        info_hash: &[u8; 20],
        token: Option<&str>,
    ) -> Result<(IssuedTorrent, Option<TokenGrant>), &'static str> {
        if let Some(sources) = self.admission.sources(info_hash)
            && let Ok(admitted) = self.admit_to(&sources, token).await
        {
            return Ok(admitted);
        }
        let sources = match self.store.torrent_sources(&hex::encode(info_hash)).await {
            Ok(s) => s,
            Err(_) => return Err("storage unavailable, try again later"),
        };
        if sources.is_empty() && self.options.open_tracker {
            // `--open-tracker`: any info-hash, as an open swarm of its own.
            let open = IssuedTorrent {
                bucket: String::new(),
                key: String::new(),
                version: String::new(),
                name: String::new(),
                format: "v1".to_owned(),
                private: false,
                info_hash: hex::encode(info_hash),
                created_ns: 0,
            };
            return Ok((open, None));
        }
        if sources.is_empty() {
            return Err(UNREGISTERED);
        }
        let sources = self.admission.remember_sources(*info_hash, sources);
        self.admit_to(&sources, token).await
    }

    async fn admit_to(
        &self,
        sources: &TorrentSources,
        token: Option<&str>,
    ) -> Result<(IssuedTorrent, Option<TokenGrant>), &'static str> {
        let grant = match (sources.private(), sources.records.first(), token) {
            (true, Some(rec), Some(token)) => {
                self.admission
                    .token_grant(&self.options.token_key, token, &rec.info_hash)
            }
            _ => None,
        };
        match self.resolve_source(sources, grant.as_ref()).await {
            Resolved::Serve(rec) => Ok((rec, grant)),
            Resolved::Unknown => Err(UNREGISTERED),
            Resolved::Gone => Err(
                "gone: the object of this torrent was deleted or changed since the torrent was issued",
            ),
            Resolved::Forbidden if sources.private() => {
                Err("the key of this announce URL may no longer read the object")
            }
            Resolved::Forbidden => Err("this object is no longer public"),
        }
    }

    /// A swarm's scrape numbers, our seeders counted among the seeds (zeros when the
    /// tracker's state cannot be reached).
    pub(crate) async fn scrape_entry(
        &self,
        rec: &IssuedTorrent,
        key: &[u8; 20],
    ) -> seedbucket_wire::tracker::http::ScrapeEntry {
        let mut e = self.tracker.scrape(key).await.unwrap_or_default();
        if !rec.bucket.is_empty() {
            let seeders = self.tracker.server_seeders().len();
            e.complete = e
                .complete
                .saturating_add(u32::try_from(seeders).unwrap_or(u32::MAX));
        }
        e
    }

    /// Records the announce in the swarm, and answers with its peers plus the server's own
    /// seeders (every node's, with Redis). An address that announced a private torrent with a
    /// valid token may then download it from any node's seeder. `Err`: a failure reason.
    pub(crate) async fn swarm_announce(
        &self,
        admitted: &Admitted,
        peer: &PeerAnnounce,
        downloaded: u64,
    ) -> Result<seedbucket_wire::tracker::http::AnnounceReply, String> {
        let mut peers = Vec::new();
        let mut reply = self
            .swarm_announce_into(admitted, peer, downloaded, unix_now(), &mut peers)
            .await?;
        reply.peers = peers;
        Ok(reply)
    }

    /// [`Self::swarm_announce`] at `now` (unix seconds), the reply's peers given to `peers` as
    /// they are picked (the server's seeders first), its list left empty: the UDP tracker
    /// writes them straight into its datagram.
    pub(crate) async fn swarm_announce_into(
        &self,
        admitted: &Admitted,
        peer: &PeerAnnounce,
        downloaded: u64,
        now: u64,
        peers: &mut impl PeerSink,
    ) -> Result<seedbucket_wire::tracker::http::AnnounceReply, String> {
        let rec = &admitted.rec;
        let key = admitted
            .swarm
            .ok_or_else(|| "internal error: bad info-hash record".to_owned())?;
        let unavailable = |e: seedbucket_tracker::Unavailable| {
            tracing::warn!(error = %e, "announce refused");
            "tracker state unavailable; try again later".to_owned()
        };
        let in_process = self.tracker.in_process();
        if let Some(admission) = &admitted.admission
            && peer.event != seedbucket_wire::tracker::http::Event::Stopped
        {
            match in_process {
                Some(t) => t.admit_now(key, peer.addr.ip(), admission),
                None => self
                    .tracker
                    .admit(key, peer.addr.ip(), admission)
                    .await
                    .map_err(unavailable)?,
            }
        }
        // The server's seeders go first (not to a seeder itself), and not again among the
        // swarm's peers. Not for a torrent of no object.
        let (own, nodes);
        let seeders: &[SocketAddr] = match in_process {
            _ if rec.bucket.is_empty() => &[],
            Some(t) => {
                own = t.seeder();
                own.as_slice()
            }
            None => {
                nodes = self.tracker.server_seeders();
                &nodes
            }
        };
        let mut listed = ServerSeedersFirst {
            peers,
            seeders,
            listed: 0,
        };
        for &seeder in seeders.iter().filter(|s| **s != peer.addr) {
            listed.peers.take(seeder, &server_seeder_id(seeder));
            listed.listed += 1;
        }
        let mut reply = match in_process {
            Some(t) => t.announce_now_into(key, peer, now, &mut listed),
            None => {
                let mut reply = self
                    .tracker
                    .announce(key, peer, now)
                    .await
                    .map_err(unavailable)?;
                for (addr, id) in std::mem::take(&mut reply.peers) {
                    listed.take(addr, &id);
                }
                reply
            }
        };
        let listed_seeders = u32::try_from(listed.listed).unwrap_or(u32::MAX);
        reply.complete = reply.complete.saturating_add(listed_seeders);
        use seedbucket_wire::tracker::http::Event;
        let finished = peer.event == Event::Completed
            || (peer.event == Event::Stopped && peer.left == 0 && downloaded > 0);
        if finished && !rec.bucket.is_empty() {
            self.count_finished(rec, key, peer.peer_id).await;
        }
        Ok(reply)
    }

    /// Whether `ip` may announce once more now (the per-address rate limit).
    pub(crate) async fn allow_announce(&self, ip: std::net::IpAddr) -> bool {
        match self.tracker.in_process() {
            Some(t) => !t.limits_announces() || t.allow_announce_now(ip, unix_now_ms()),
            None => self.tracker.allow_announce(ip, unix_now_ms()).await,
        }
    }

    /// A download of `rec`'s object finished (the peer announced `completed`, or stopped with
    /// nothing left after downloading): its size counts as delivered to a client, once per
    /// peer and swarm (a `completed` and then a `stopped` are one download).
    pub(crate) async fn count_finished(
        &self,
        rec: &IssuedTorrent,
        swarm: [u8; 20],
        peer_id: [u8; 20],
    ) {
        if !self.stats.first_finish(swarm, peer_id) {
            return;
        }
        // The version the torrent was made from, current or not.
        let which = seedbucket_store::Which::Exact(&rec.version);
        if let Ok(o) = self
            .store
            .head_object_at(&rec.bucket, &rec.key, which)
            .await
        {
            self.stats
                .completed(&format!("{}/{}", rec.bucket, rec.key), o.size);
        }
    }

    async fn announce(
        &self,
        token: Option<&str>,
        query: &str,
        remote: Option<SocketAddr>,
    ) -> Response<Body> {
        let a = match parse_announce(query) {
            Ok(a) => a,
            Err(e) => {
                self.stats.tracker_failure(Transport::Http);
                return failure(&e.to_string());
            }
        };
        let Some(remote) = remote else {
            return failure("no peer address");
        };
        if !self.allow_announce(remote.ip()).await {
            self.stats.rate_limited(Transport::Http);
            return failure("rate limited: too many announces from your address; slow down");
        }
        let admitted = match self.admitted(&a.info_hash, token).await {
            Ok(r) => r,
            Err(reason) => {
                self.stats.tracker_failure(Transport::Http);
                return failure(reason);
            }
        };
        self.stats.announce(Transport::Http);
        // Both hashes of a hybrid share one swarm: the primary one.
        let peer = PeerAnnounce {
            peer_id: a.peer_id,
            addr: SocketAddr::new(remote.ip(), a.port),
            left: a.left,
            event: a.event,
            numwant: a.numwant,
        };
        let reply = match self.swarm_announce(&admitted, &peer, a.downloaded).await {
            Ok(r) => r,
            Err(reason) => return failure(&reason),
        };
        bencoded(reply.encode(a.compact))
    }

    async fn scrape(&self, token: Option<&str>, query: &str) -> Response<Body> {
        self.stats.scrape(Transport::Http);
        let hashes = match parse_scrape(query) {
            Ok(h) => h,
            Err(e) => return failure(&e.to_string()),
        };
        let mut entries = Vec::with_capacity(hashes.len());
        for h in hashes {
            let Ok(admitted) = self.admitted(&h, token).await else {
                continue;
            };
            if let Some(key) = admitted.swarm {
                entries.push((h, self.scrape_entry(&admitted.rec, &key).await));
            }
        }
        bencoded(encode_scrape(&entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(key: &str) -> Arc<Admitted> {
        let rec = IssuedTorrent {
            bucket: "b".to_owned(),
            key: key.to_owned(),
            version: "v".to_owned(),
            name: key.to_owned(),
            format: "v1".to_owned(),
            private: true,
            info_hash: "07".repeat(20),
            created_ns: 0,
        };
        let grant = TokenGrant::from_admission("-:AK");
        Arc::new(Admitted::new(rec, Some(&grant)))
    }

    #[test]
    fn an_answer_is_reused_for_its_token_and_generation_only() {
        let cache = AdmissionCache::default();
        let h = [7u8; 20];
        assert!(cache.decision(&h, Some("t1"), (0, 0)).is_none());
        cache.remember_decision(h, Some("t1"), (0, 0), admitted("one"));
        let known = cache.decision(&h, Some("t1"), (0, 0)).expect("remembered");
        assert_eq!(known.rec.key, "one");
        assert_eq!(known.swarm, Some([7u8; 20]));
        assert_eq!(known.admission.as_deref(), Some("-:AK"));
        // Another token, no token, another info-hash: not that answer.
        assert!(cache.decision(&h, Some("t2"), (0, 0)).is_none());
        assert!(cache.decision(&h, None, (0, 0)).is_none());
        assert!(cache.decision(&[8u8; 20], Some("t1"), (0, 0)).is_none());
        // A write through this node, or forgotten readers (a key, ACL or policy changed):
        // stale at once.
        assert!(cache.decision(&h, Some("t1"), (0, 1)).is_none());
        assert!(cache.decision(&h, Some("t1"), (1, 0)).is_none());
        // An answer for the same token replaces the one before.
        cache.remember_decision(h, Some("t1"), (1, 0), admitted("two"));
        let again = cache.decision(&h, Some("t1"), (1, 0)).expect("replaced");
        assert_eq!(again.rec.key, "two");
    }

    #[test]
    fn an_open_torrents_answer_is_kept_once_for_any_token() {
        let cache = AdmissionCache::default();
        let h = [9u8; 20];
        let open = IssuedTorrent {
            private: false,
            ..admitted("open").rec.clone()
        };
        for t in ["made-up-1", "made-up-2", "made-up-3"] {
            cache.remember_decision(
                h,
                Some(t),
                (0, 0),
                Arc::new(Admitted::new(open.clone(), None)),
            );
        }
        assert_eq!(cache.decisions.lock().unwrap()[&h].len(), 1);
        for t in [Some("another"), None] {
            let known = cache.decision(&h, t, (0, 0)).expect("open answer");
            assert_eq!(known.rec.key, "open");
        }
    }

    #[test]
    fn answers_per_info_hash_are_bounded() {
        let cache = AdmissionCache::default();
        let h = [7u8; 20];
        let tokens: Vec<String> = (0..AdmissionCache::DECISIONS_PER_HASH + 5)
            .map(|i| format!("t{i}"))
            .collect();
        for t in &tokens {
            cache.remember_decision(h, Some(t), (0, 0), admitted(t));
        }
        let m = cache.decisions.lock().unwrap();
        assert_eq!(m[&h].len(), AdmissionCache::DECISIONS_PER_HASH);
        drop(m);
        // The newest answers are the ones kept.
        let last = tokens.last().unwrap();
        assert!(cache.decision(&h, Some(last), (0, 0)).is_some());
    }

    #[test]
    fn forgetting_readers_moves_the_generation() {
        let cache = AdmissionCache::default();
        let before = cache
            .readers_forgotten
            .load(std::sync::atomic::Ordering::Acquire);
        cache.forget_readers();
        let after = cache
            .readers_forgotten
            .load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(after, before + 1);
    }

    #[test]
    fn the_token_is_found_in_a_query_of_bytes() {
        use std::borrow::Cow;
        let plain = token_from_query_bytes(b"info_hash=x&sb_token=v1.abc-_DEF&port=1");
        assert!(
            matches!(plain, Some(Cow::Borrowed("v1.abc-_DEF"))),
            "{plain:?}"
        );
        assert_eq!(
            token_from_query_bytes(b"sb_token=a%2Eb").as_deref(),
            Some("a.b")
        );
        assert_eq!(token_from_query_bytes(b"x_sb_token=a&sb_tokens=b"), None);
        assert_eq!(token_from_query_bytes(b""), None);
        // Not UTF-8: replaced, never a panic; such a token verifies as nothing.
        assert_eq!(
            token_from_query_bytes(b"sb_token=a\xffb").as_deref(),
            Some("a\u{fffd}b")
        );
        assert_eq!(token_from_query("a=1&sb_token=t").as_deref(), Some("t"));
    }

    #[test]
    fn joined_cache_keys_are_unambiguous() {
        let keys = [
            joined(&["ab", "c", "d"]),
            joined(&["a", "bc", "d"]),
            joined(&["a", "b", "cd"]),
            joined(&["", "abc", "d"]),
            joined(&["1:a", "b", "c"]),
            joined(&["1", "a", "bc"]),
        ];
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        // The reused buffer gives the same key, also when asked from inside itself.
        let parts = ["key", "bucket", "k/ey", "v1"];
        assert_eq!(with_joined(&parts, str::to_owned), joined(&parts));
        let nested = with_joined(&parts, |outer| {
            with_joined(&["x", "y"], |inner| format!("{outer}|{inner}"))
        });
        assert_eq!(
            nested,
            format!("{}|{}", joined(&parts), joined(&["x", "y"]))
        );
    }

    #[test]
    fn a_server_seeders_id_is_the_hash_of_its_address_text() {
        // The same ids as ever (FNV-1a of `to_string()`, 12 decimal digits), so nodes of
        // different versions hand out the same id for one seeder.
        for text in ["127.0.0.1:6881", "[2001:db8::1]:51413", "10.0.0.255:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            let expected = format!("-SB0100-{:012}", hash % 1_000_000_000_000);
            assert_eq!(&server_seeder_id(addr)[..], expected.as_bytes());
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.append("x-forwarded-for", "1.2.3.4, 198.51.100.7".parse().unwrap());
        let trusted = ["10.0.0.2".parse().unwrap()];
        assert_eq!(
            forwarded_client(proxy, &h, &trusted).ip().to_string(),
            "198.51.100.7"
        );
        assert_eq!(forwarded_client(proxy, &h, &[]), proxy);
        h.append("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(forwarded_client(proxy, &h, &trusted), proxy);
        assert_eq!(
            forwarded_client(proxy, &http::HeaderMap::new(), &trusted),
            proxy
        );
    }
}
