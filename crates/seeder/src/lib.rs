//! The BitTorrent seeder: serves every torrent the server issues over the peer wire protocol.
//!
//! Where it sits: the server binds a TCP listener and calls [`serve`] (or [`Seeder::serve`])
//! with its [`Library`], the seeder's only view of the object store. A peer connects and sends a
//! handshake; the info-hash in it goes to [`Library::lookup`], which answers with a
//! [`SeedTorrent`] (the exact info dictionary, the geometry and the v2 piece layer) or refuses.
//! Block requests are checked with [`seedbucket_wire::peer::block_offset`] and read with
//! [`Library::read`], 16 KiB at a time, then written after a 13-byte piece header without
//! another copy. The seeder never touches files or the metadata DB itself.
//!
//! What a connection speaks: BEP 3 (handshake, bitfield, request/cancel, keep-alive), BEP 6
//! (`have all`, `reject`), BEP 10 with BEP 9 `ut_metadata` (so magnet links resolve from us) and
//! BEP 52 hash requests for the piece layer of v2 and hybrid torrents.
//!
//! Modules:
//! - `listener`: the accept loop, graceful shutdown.
//! - `slots`: the connection caps (in total and per address) and which idle connection gives
//!   up its slot to a new one.
//! - `conn`: one connection's IO: handshake, framed reads capped at
//!   [`recommended_max_message_len`](seedbucket_wire::peer::recommended_max_message_len), a
//!   writer task with keep-alives, a few block reads in flight, timeouts.
//! - `session`: the protocol state machine, no IO: messages in, messages and block reads out.
//! - `choke`: upload slots shared by all connections, with fair rotation.
//! - `rate`: token buckets for the total and per-peer upload rate limits.
//! - `merkle`: answers BEP 52 hash requests from the piece layer (the tree above it built once
//!   per file and shared while connections use it).
//! - [`MemoryLibrary`]: a [`Library`] over bytes in memory, for tests and examples.
//!
//! A misbehaving peer (malformed or oversized message, bad request, flood) loses its own
//! connection and nothing else; memory per connection is bounded by the read-buffer cap, the
//! request-queue cap and the writer's queue.

mod choke;
mod conn;
mod encryption;
mod listener;
mod memory;
mod merkle;
mod rate;
mod rc4_io;
mod session;
mod slots;
mod utp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use seedbucket_torrent::{Format, InfoHashes, ParseError, PieceHashes, build_info};

pub use listener::{Seeder, SeederStats, serve};
pub use memory::MemoryLibrary;
pub use rate::RateLimiter;
pub use utp::UtpListener;

/// What the seeder serves; implemented by the server over its object store.
#[async_trait::async_trait]
pub trait Library: Send + Sync + 'static {
    /// The torrent a handshake's info-hash names (a v1 hash, or a v2 hash truncated to 20
    /// bytes), if `peer` may download it. `None` closes the connection.
    async fn lookup(&self, info_hash: &[u8; 20], peer: SocketAddr) -> Option<Arc<SeedTorrent>>;

    /// Exactly `len` bytes of the torrent's content at `offset` (the seeder never asks for more
    /// than 16 KiB per call, and may call concurrently). `Err` means the object is gone or
    /// changed: the peer is dropped.
    async fn read(&self, torrent: &SeedTorrent, offset: u64, len: u32) -> std::io::Result<Bytes>;

    /// Whether `peer`, connected to `torrent`, may still download it. Asked every
    /// [`SeederOptions::access_recheck_every`] while the connection lasts; `false` drops the
    /// peer. The default looks the torrent up again as a new handshake would.
    async fn still_allowed(&self, torrent: &SeedTorrent, peer: SocketAddr) -> bool {
        match torrent
            .info_hash_v1
            .or_else(|| torrent.info_hash_v2_truncated())
        {
            Some(h) => self.lookup(&h, peer).await.is_some(),
            None => false,
        }
    }

    /// Bytes uploaded, for statistics (called once per block sent).
    /// The info-hash whose `SHA1("req2" info-hash)` is `obfuscated` (see
    /// [`seedbucket_wire::peer::mse::obfuscated_info_hash`]): how an encrypted handshake names
    /// its torrent. `None` when no torrent we may serve has it; the handshake is then refused.
    /// [`Library::lookup`] is asked afterwards as for a plain handshake. The default knows
    /// none, so a library without it serves plain handshakes only.
    async fn resolve_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<[u8; 20]> {
        let _ = obfuscated;
        None
    }

    fn uploaded(&self, torrent: &SeedTorrent, bytes: u64) {
        let _ = (torrent, bytes);
    }
}

/// One torrent as the seeder needs it: a single file, its exact info dictionary and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedTorrent {
    /// SHA-1 of `info`, when the torrent has v1 keys.
    pub info_hash_v1: Option<[u8; 20]>,
    /// SHA-256 of `info`, when the torrent has v2 keys.
    pub info_hash_v2: Option<[u8; 32]>,
    /// The exact bencoded info dictionary (served over BEP 9 `ut_metadata`).
    pub info: Bytes,
    /// Content length in bytes.
    pub total_length: u64,
    /// Piece length in bytes (a power of two of at least 16 KiB for v2).
    pub piece_length: u64,
    /// Piece-layer hashes for BEP 52 hash requests; `None` for v1-only torrents and files of at
    /// most one piece.
    pub v2_piece_layer: Option<Vec<[u8; 32]>>,
    /// The file's v2 merkle root (`pieces root`), when the torrent has v2 keys and content.
    pub pieces_root: Option<[u8; 32]>,
    /// Opaque id for the library (for example bucket/key/version).
    pub key: String,
}

impl SeedTorrent {
    /// The torrent for one file named `name` with hashes `hashes`, in `format`: the info
    /// dictionary is made with [`build_info`], so its info-hashes equal those of the `.torrent`
    /// the server hands out for the same inputs.
    pub fn build(
        key: impl Into<String>,
        name: &str,
        hashes: &PieceHashes,
        format: Format,
        private: bool,
    ) -> Result<Self, ParseError> {
        let info = build_info(name, hashes, format, private)?;
        let ih = InfoHashes::of_info(&info, format);
        let layer = if format.has_v2() {
            hashes
                .v2_layer
                .as_deref()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    l.chunks_exact(32)
                        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
                        .collect()
                })
        } else {
            None
        };
        Ok(Self {
            info_hash_v1: ih.v1,
            info_hash_v2: ih.v2,
            info: Bytes::from(info),
            total_length: hashes.length,
            piece_length: hashes.piece_length,
            v2_piece_layer: layer,
            pieces_root: if format.has_v2() {
                hashes.v2_root
            } else {
                None
            },
            key: key.into(),
        })
    }

    /// The v2 info-hash truncated to 20 bytes, as trackers, DHT and handshakes use it.
    pub fn info_hash_v2_truncated(&self) -> Option<[u8; 20]> {
        self.info_hash_v2
            .and_then(|h| h.first_chunk::<20>().copied())
    }

    /// Whether a handshake's info-hash names this torrent (v1, or v2 truncated).
    pub fn matches(&self, info_hash: &[u8; 20]) -> bool {
        self.info_hash_v1.as_ref() == Some(info_hash)
            || self.info_hash_v2_truncated().as_ref() == Some(info_hash)
    }

    /// The number of pieces, or `None` when the geometry is unusable (zero piece length, or
    /// more pieces than a `u32` counts).
    pub fn piece_count(&self) -> Option<u32> {
        if self.piece_length == 0 {
            return None;
        }
        u32::try_from(self.total_length.div_ceil(self.piece_length)).ok()
    }
}

/// Tunables of a [`Seeder`]. `Default` gives the values documented per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeederOptions {
    /// Most simultaneous peer connections. At the cap a new connection takes the slot of the
    /// longest-idle connection with no requests outstanding, or is closed right after accept
    /// when every connection is being served. Default 500.
    pub max_connections: usize,
    /// Most simultaneous connections from one address (an IPv4 address, an IPv6 /64); past it
    /// a new connection takes the slot of that address's longest-idle connection, or is
    /// closed. Default 8: a BitTorrent client opens one connection per torrent to a peer, so
    /// 8 lets a NAT'd network run several clients at once, while filling the 500 slots then
    /// takes 63 addresses (and idle slots are given to newcomers anyway).
    pub max_connections_per_address: usize,
    /// A peer that requests nothing (no block, metadata or hashes) for this long while it is
    /// not waiting for an upload slot (not interested, or unchoked and not asking) is dropped.
    /// Being unchoked restarts the clock. Default 3 min.
    pub inactive_timeout: Duration,
    /// How often a connected peer's right to the torrent is checked again
    /// ([`Library::still_allowed`]): revoking access stops the pieces within about this
    /// (plus the library's own caching). Default 2 s.
    pub access_recheck_every: Duration,
    /// Upload slots per torrent: most peers of one torrent unchoked at once (at least 1).
    /// Default 4: a few peers at a time get whole pieces fast and pass them on to the rest of
    /// the swarm (measured: 8 leechers made the server upload 1.46x the object with 4 slots,
    /// 2.48x with every peer unchoked).
    pub max_unchoked: usize,
    /// How often waiting peers replace the longest-unchoked ones. Default 10 s.
    pub rotate_every: Duration,
    /// Total upload rate limit in bytes per second; `None` (or 0) for none. Default none.
    pub upload_rate_limit_total: Option<u64>,
    /// Upload rate limit per peer in bytes per second; `None` (or 0) for none. Default none.
    pub upload_rate_limit_per_peer: Option<u64>,
    /// Most outstanding block requests per peer (also announced as `reqq`); a peer that sends
    /// more is dropped. Default 2048: aria2c pipelines several hundred requests whatever `reqq`
    /// says, and a queued request costs a few dozen bytes.
    pub max_request_queue: usize,
    /// Time a peer has to send its whole handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// A peer that sends nothing (not even a keep-alive) for this long, or does not read what
    /// we send for this long, is dropped. Default 3 min (clients keep alive every 1-2 min).
    pub idle_timeout: Duration,
    /// Interval of our keep-alives when we have nothing else to send. Default 60 s.
    pub keepalive_every: Duration,
    /// The first 8 bytes of our peer id (Azureus style); the rest is random. Default
    /// `-SB0100-`.
    pub peer_id_prefix: [u8; 8],
    /// Which incoming handshakes are accepted: plain, encrypted (Message Stream Encryption)
    /// or both. Default both.
    pub encryption: Encryption,
}

/// Which incoming handshakes the seeder accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// Plain BitTorrent handshakes and encrypted ones (Message Stream Encryption, told apart
    /// by their first bytes). When a peer offers both plaintext and RC4 for the payload,
    /// plaintext is chosen: the handshake is obfuscated either way, and the blocks are no
    /// secret to their seeder.
    #[default]
    Allow,
    /// Encrypted handshakes only, with an RC4-encrypted payload; plain handshakes and peers
    /// offering only plaintext are refused.
    Require,
    /// Plain handshakes only, as before encryption was supported.
    Off,
}

impl Default for SeederOptions {
    fn default() -> Self {
        Self {
            max_connections: 500,
            max_connections_per_address: 8,
            inactive_timeout: Duration::from_secs(180),
            access_recheck_every: Duration::from_secs(2),
            max_unchoked: 4,
            rotate_every: Duration::from_secs(10),
            upload_rate_limit_total: None,
            upload_rate_limit_per_peer: None,
            max_request_queue: 2048,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(180),
            keepalive_every: Duration::from_secs(60),
            peer_id_prefix: *b"-SB0100-",
            encryption: Encryption::Allow,
        }
    }
}

/// The client name and version we announce in the extension handshake (`v`).
pub const CLIENT_VERSION: &str = concat!("seedbucket/", env!("CARGO_PKG_VERSION"));
