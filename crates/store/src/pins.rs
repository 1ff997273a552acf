//! Reader pins: a blob that a GET is streaming is not removed by the garbage collector, even
//! after the object was overwritten or deleted. The last unpin wakes the collector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Wake = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(crate) struct Pins {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Pins {
    pub(crate) fn pin(&self, blobs: Vec<String>, wake: Wake) -> PinGuard {
        if let Ok(mut counts) = self.counts.lock() {
            for b in &blobs {
                *counts.entry(b.clone()).or_insert(0) += 1;
            }
        }
        PinGuard {
            counts: self.counts.clone(),
            blobs,
            wake,
        }
    }

    pub(crate) fn is_pinned(&self, blob: &str) -> bool {
        // A poisoned lock means a panic elsewhere; keeping the file is the safe answer.
        self.counts.lock().map_or(true, |c| c.contains_key(blob))
    }
}

/// Holds pins until dropped.
pub struct PinGuard {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    blobs: Vec<String>,
    wake: Wake,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut freed = false;
        if let Ok(mut counts) = self.counts.lock() {
            for b in &self.blobs {
                if let Some(c) = counts.get_mut(b) {
                    *c -= 1;
                    if *c == 0 {
                        counts.remove(b);
                        freed = true;
                    }
                }
            }
        }
        if freed {
            (self.wake)();
        }
    }
}
