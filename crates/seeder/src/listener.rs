//! The accept loop: a slot per connection (see `slots`), the choker's rotation, graceful
//! shutdown.

use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::choke::Choker;
use crate::merkle::TreeCache;
use crate::rate::RateLimiter;
use crate::slots::Slots;
use crate::utp::UtpListener;
use crate::{Library, SeederOptions, conn};

/// How long connections get to finish after shutdown before they are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// State every connection of one seeder shares.
pub(crate) struct Shared {
    pub(crate) library: Arc<dyn Library>,
    pub(crate) options: SeederOptions,
    pub(crate) choker: Choker,
    pub(crate) total_limit: Option<Arc<RateLimiter>>,
    pub(crate) peer_id: [u8; 20],
    pub(crate) trees: Arc<TreeCache>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) connections: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) uploaded: AtomicU64,
    pub(crate) blocks: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) inactive: AtomicU64,
    pub(crate) utp_accepted: AtomicU64,
    pub(crate) encrypted_plaintext: AtomicU64,
    pub(crate) encrypted_rc4: AtomicU64,
    /// One line per peer connection when it ends.
    pub(crate) access_log: seedbucket_access_log::AccessLog,
}

/// A point-in-time view of a seeder's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeederStats {
    /// Open peer connections (handshaking or serving).
    pub connections: usize,
    /// Connections accepted since start (including those closed at once for the cap).
    pub connections_accepted: u64,
    /// Connections refused at once: every slot (of their address, or in total) was busy.
    pub connections_refused: u64,
    /// Connections closed to give their slot to a newer one.
    pub connections_evicted: u64,
    /// Connections closed for requesting nothing for the inactive timeout.
    pub connections_inactive: u64,
    /// Peers holding an upload slot.
    pub unchoked: usize,
    /// Interested peers waiting for a slot.
    pub waiting: usize,
    /// Block bytes sent since start.
    pub uploaded_bytes: u64,
    /// Blocks sent since start.
    pub blocks_sent: u64,
    /// Of the connections accepted, those over uTP (the rest came over TCP).
    pub utp_connections_accepted: u64,
    /// Encrypted handshakes completed whose payload then went as plaintext.
    pub encrypted_handshakes_plaintext: u64,
    /// Encrypted handshakes completed whose payload is RC4-encrypted.
    pub encrypted_handshakes_rc4: u64,
}

/// A seeder: cheap to clone, so the server can keep a handle for statistics while
/// [`Seeder::serve`] runs.
#[derive(Clone)]
pub struct Seeder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Seeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeder")
            .field("peer_id", &String::from_utf8_lossy(&self.shared.peer_id))
            .field("stats", &self.stats())
            .finish()
    }
}

/// Our peer id: the prefix, then 12 random alphanumerics (from the standard library's
/// randomly keyed hasher, plenty for an id that only has to differ between seeders).
fn make_peer_id(prefix: [u8; 8]) -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let keys = std::collections::hash_map::RandomState::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&prefix);
    for (i, slot) in id[8..].iter_mut().enumerate() {
        let mut h = keys.build_hasher();
        h.write_u128(now);
        h.write_usize(i);
        let pick = usize::try_from(h.finish() % ALPHABET.len() as u64).unwrap_or(0);
        *slot = ALPHABET.get(pick).copied().unwrap_or(b'0');
    }
    id
}

impl Seeder {
    pub fn new(library: Arc<dyn Library>, options: SeederOptions) -> Self {
        Self::with_access_log(library, options, seedbucket_access_log::AccessLog::off())
    }

    /// Like [`Seeder::new`], writing one access-log line per peer connection when it ends.
    pub fn with_access_log(
        library: Arc<dyn Library>,
        options: SeederOptions,
        access_log: seedbucket_access_log::AccessLog,
    ) -> Self {
        let shared = Shared {
            library,
            choker: Choker::new(options.max_unchoked),
            total_limit: RateLimiter::new(options.upload_rate_limit_total).map(Arc::new),
            peer_id: make_peer_id(options.peer_id_prefix),
            trees: Arc::default(),
            slots: Slots::new(options.max_connections, options.max_connections_per_address),
            options,
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            inactive: AtomicU64::new(0),
            utp_accepted: AtomicU64::new(0),
            encrypted_plaintext: AtomicU64::new(0),
            encrypted_rc4: AtomicU64::new(0),
            access_log,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The peer id we send in handshakes.
    pub fn peer_id(&self) -> [u8; 20] {
        self.shared.peer_id
    }

    pub fn stats(&self) -> SeederStats {
        let (unchoked, waiting) = self.shared.choker.counts();
        SeederStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            connections_accepted: self.shared.accepted.load(Ordering::Relaxed),
            connections_refused: self.shared.refused.load(Ordering::Relaxed),
            connections_evicted: self.shared.evicted.load(Ordering::Relaxed),
            connections_inactive: self.shared.inactive.load(Ordering::Relaxed),
            unchoked,
            waiting,
            uploaded_bytes: self.shared.uploaded.load(Ordering::Relaxed),
            blocks_sent: self.shared.blocks.load(Ordering::Relaxed),
            utp_connections_accepted: self.shared.utp_accepted.load(Ordering::Relaxed),
            encrypted_handshakes_plaintext: self.shared.encrypted_plaintext.load(Ordering::Relaxed),
            encrypted_handshakes_rc4: self.shared.encrypted_rc4.load(Ordering::Relaxed),
        }
    }

    /// Accepts peers on `listener` until `shutdown` completes, then closes every connection
    /// (after a short grace) and returns. Accept errors (such as running out of file
    /// descriptors) are logged and retried, never returned.
    pub async fn serve<F: Future>(&self, listener: TcpListener, shutdown: F) -> io::Result<()> {
        self.serve_transports(listener, None, shutdown).await
    }

    /// [`Seeder::serve`], and uTP connections from `utp` as well (usually bound to the same
    /// address and port number, over UDP).
    pub async fn serve_with_utp<F: Future>(
        &self,
        listener: TcpListener,
        utp: UtpListener,
        shutdown: F,
    ) -> io::Result<()> {
        self.serve_transports(listener, Some(utp), shutdown).await
    }

    async fn serve_transports<F: Future>(
        &self,
        listener: TcpListener,
        mut utp: Option<UtpListener>,
        shutdown: F,
    ) -> io::Result<()> {
        let shared = &self.shared;
        let (stop_tx, stop_rx) = watch::channel(false);
        let rotation = tokio::spawn({
            let shared = Arc::clone(shared);
            async move {
                let every = shared.options.rotate_every.max(Duration::from_millis(10));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    shared.choker.rotate(every);
                }
            }
        });
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, utp = ?utp.as_ref().map(UtpListener::local_addr), "seeder listening");
        }
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(slot) = self.admit(peer) {
                            let guard = Counted::new(Arc::clone(shared));
                            let stop = stop_rx.clone();
                            tasks.spawn(async move {
                                conn::run(stream, peer, Arc::clone(&guard.0), stop, slot).await;
                                drop(guard);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                accepted = accept_utp(utp.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        shared.utp_accepted.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = self.admit(peer) {
                            let guard = Counted::new(Arc::clone(shared));
                            let stop = stop_rx.clone();
                            let (rd, wr) = stream.split();
                            tasks.spawn(async move {
                                conn::run_halves(Box::new(rd), Box::new(wr), peer, Arc::clone(&guard.0), stop, slot, "utp").await;
                                drop(guard);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "uTP stopped; serving TCP only");
                        utp = None;
                    }
                },
            }
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.shutdown().await;
        rotation.abort();
        tracing::info!("seeder stopped");
        Ok(())
    }
}

impl Seeder {
    /// A slot for a new connection from `peer`, or `None` (counted, logged) when every slot
    /// it could take is busy.
    fn admit(&self, peer: std::net::SocketAddr) -> Option<crate::slots::Slot> {
        let shared = &self.shared;
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        match shared.slots.admit(peer.ip()) {
            Ok(slot) => Some(slot),
            Err(why) => {
                tracing::debug!(%peer, ?why, "no free connection slot; closing");
                shared.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The next uTP connection, or never when there is no uTP listener.
async fn accept_utp(
    utp: Option<&UtpListener>,
) -> io::Result<(librqbit_utp::UtpStream, std::net::SocketAddr)> {
    match utp {
        Some(u) => u.accept().await,
        None => std::future::pending().await,
    }
}

/// Counts a connection from accept until its task ends or is aborted.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `library` on `listener` with `options` until `shutdown` completes: shorthand for
/// [`Seeder::new`] then [`Seeder::serve`].
pub async fn serve<F: Future>(
    listener: TcpListener,
    library: Arc<dyn Library>,
    options: SeederOptions,
    shutdown: F,
) -> io::Result<()> {
    Seeder::new(library, options)
        .serve(listener, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids() {
        let a = make_peer_id(*b"-SB0100-");
        let b = make_peer_id(*b"-SB0100-");
        assert_eq!(&a[..8], b"-SB0100-");
        assert!(a[8..].iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b);
    }
}
