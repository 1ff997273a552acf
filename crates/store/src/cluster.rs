//! What several gateway nodes share beyond the backend: leases, so that one node does a piece
//! of work (hashing an object for its first `?torrent`) while the others wait for its result,
//! and change notices, so that a record written through one node is not served stale by
//! another for the rest of its cache time. The store defines the calls; `seedbucket-cluster`
//! answers them from Redis. Without it every node works alone, as in embedded mode.

use std::time::Duration;

/// A record in the metadata bucket changed (its key: `buckets/photos.json`, `keys.json`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaChange {
    /// The metadata bucket key; empty for "anything may have changed" (notices were lost).
    pub key: String,
    /// Written by another node (a change notice), not by this one.
    pub remote: bool,
}

/// Leases shared by the nodes. A lease has a name, a holder and a time to live: a holder that
/// dies loses it when the time runs out.
#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Takes `name` for `ttl` unless someone holds it: `Ok(true)` taken, `Ok(false)` held by
    /// another. `Err`: the lease service cannot be reached.
    async fn try_take(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String>;
    /// Extends a lease `holder` has; `Ok(false)` if it no longer has it.
    async fn renew(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String>;
    /// Gives a lease back (nothing if `holder` no longer has it).
    async fn release(&self, name: &str, holder: &str);
}

/// How long a hashing lease lasts without renewal; the holder renews it every third of that.
pub const HASH_LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a node waiting on another's hashing looks for its result.
pub(crate) const HASH_WAIT_POLL: Duration = Duration::from_millis(200);
