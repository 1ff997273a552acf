//! Object records read within the last [`RECENT`], for the checks made on every tracker
//! announce (is a torrent's object unchanged?): in gateway mode each would be a request to the
//! backend, in embedded mode a database read. Any object write through this node forgets them
//! all at once, so this node never answers from before its own write; in gateway mode a write
//! through another node, or straight to the backend, shows within [`RECENT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::records::ObjectRecord;

/// How long a record is reused.
pub const RECENT: Duration = Duration::from_secs(1);
/// Records kept at most; past this the oldest half of the time is dropped at once.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct RecentHeads {
    entries: Mutex<HashMap<(String, String), (Instant, ObjectRecord)>>,
    /// Object writes through this node so far.
    writes: AtomicU64,
}

impl RecentHeads {
    /// A record read less than [`RECENT`] ago, and no write through this node since.
    pub(crate) fn get(&self, bucket: &str, key: &str) -> Option<ObjectRecord> {
        let entries = self.entries.lock().ok()?;
        let (at, rec) = entries.get(&(bucket.to_owned(), key.to_owned()))?;
        (at.elapsed() < RECENT).then(|| rec.clone())
    }

    /// The write count, to pass to [`RecentHeads::put`] after reading.
    pub(crate) fn generation(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Keeps `rec`, read after `generation`, unless a write happened meanwhile.
    pub(crate) fn put(&self, generation: u64, bucket: &str, key: &str, rec: &ObjectRecord) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.writes.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < RECENT);
        }
        entries.insert(
            (bucket.to_owned(), key.to_owned()),
            (Instant::now(), rec.clone()),
        );
    }

    /// An object write through this node finished (or failed part-way): forget everything.
    pub(crate) fn wrote(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.writes.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }
}
