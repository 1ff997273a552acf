//! Object records read within the last [`RECENT`], for the checks made on every tracker
//! announce (is a torrent's object unchanged?): in gateway mode each would be a request to the
//! backend, in embedded mode a database read. Any object write through this node forgets them
//! all at once, so this node never answers from before its own write; in gateway mode a write
//! through another node, or straight to the backend, shows within [`RECENT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::records::ObjectRecord;

/// How long a record is reused.
pub const RECENT: Duration = Duration::from_secs(1);
/// Records kept at most; past this the oldest half of the time is dropped at once.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct RecentHeads {
    entries: Mutex<Entries>,
    /// Object writes through this node so far.
    writes: AtomicU64,
}

/// Bucket → key → when read and the record: looked up by `&str` without allocating, and
/// handed out shared (a record clone was a dozen allocations per announce).
#[derive(Default)]
struct Entries {
    by_bucket: HashMap<String, HashMap<String, (Instant, Arc<ObjectRecord>)>>,
    len: usize,
}

impl RecentHeads {
    /// A record read less than [`RECENT`] ago, and no write through this node since.
    pub(crate) fn get(&self, bucket: &str, key: &str) -> Option<Arc<ObjectRecord>> {
        let entries = self.entries.lock().ok()?;
        let (at, rec) = entries.by_bucket.get(bucket)?.get(key)?;
        (at.elapsed() < RECENT).then(|| Arc::clone(rec))
    }

    /// The write count, to pass to [`RecentHeads::put`] after reading.
    pub(crate) fn generation(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Keeps `rec`, read after `generation`, unless a write happened meanwhile.
    pub(crate) fn put(&self, generation: u64, bucket: &str, key: &str, rec: Arc<ObjectRecord>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.writes.load(Ordering::Acquire) != generation {
            return;
        }
        let entries = &mut *entries;
        if entries.len >= MAX_ENTRIES {
            entries.len = 0;
            entries.by_bucket.retain(|_, keys| {
                keys.retain(|_, (at, _)| at.elapsed() < RECENT);
                entries.len += keys.len();
                !keys.is_empty()
            });
        }
        let keys = entries.by_bucket.entry(bucket.to_owned()).or_default();
        if keys.insert(key.to_owned(), (Instant::now(), rec)).is_none() {
            entries.len += 1;
        }
    }

    /// An object write through this node finished (or failed part-way): forget everything.
    pub(crate) fn wrote(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.writes.fetch_add(1, Ordering::AcqRel);
            *entries = Entries::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str) -> Arc<ObjectRecord> {
        Arc::new(ObjectRecord {
            version: version.to_owned(),
            size: 1,
            etag: String::new(),
            last_modified_ns: 0,
            attributes: Default::default(),
            checksums: Default::default(),
            segments: Vec::new(),
            parts_count: None,
            completed_upload: None,
            versioned: false,
            delete_marker: false,
        })
    }

    #[test]
    fn records_are_kept_until_a_write_and_never_from_before_one() {
        let heads = RecentHeads::default();
        let g = heads.generation();
        heads.put(g, "b", "k", record("v1"));
        heads.put(g, "b", "other", record("v2"));
        assert_eq!(
            heads.get("b", "k").map(|r| r.version.clone()),
            Some("v1".into())
        );
        assert!(heads.get("b2", "k").is_none());
        // A read that started before a write is not kept.
        heads.wrote();
        assert!(heads.get("b", "k").is_none());
        heads.put(g, "b", "k", record("stale"));
        assert!(heads.get("b", "k").is_none());
        heads.put(heads.generation(), "b", "k", record("v3"));
        assert_eq!(
            heads.get("b", "k").map(|r| r.version.clone()),
            Some("v3".into())
        );
    }

    #[test]
    fn the_count_stays_bounded() {
        let heads = RecentHeads::default();
        let g = heads.generation();
        for i in 0..MAX_ENTRIES + 10 {
            heads.put(g, &format!("b{}", i % 7), &i.to_string(), record("v"));
        }
        let entries = heads.entries.lock().unwrap();
        let counted: usize = entries.by_bucket.values().map(HashMap::len).sum();
        assert_eq!(entries.len, counted);
        assert!(entries.len <= MAX_ENTRIES + 10);
    }
}
