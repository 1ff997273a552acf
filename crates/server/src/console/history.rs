//! The console's totals over time: the server's byte counters sampled every [`EVERY`], the
//! last [`KEPT`] samples kept (a day), in memory. A restart starts a new history (the counters
//! themselves start at zero then).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use seedbucket_s3::stats::Totals;

pub const EVERY: Duration = Duration::from_secs(10);
pub const KEPT: usize = 8640;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Unix time, seconds.
    pub at: u64,
    pub totals: Totals,
}

#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn record(&self, sample: Sample) {
        if let Ok(mut s) = self.samples.lock() {
            if s.len() >= KEPT {
                s.pop_front();
            }
            s.push_back(sample);
        }
    }

    /// At most `points` samples spread evenly over the history, the newest always included,
    /// then `now`.
    pub fn thinned(&self, points: usize, now: Sample) -> Vec<Sample> {
        let Ok(s) = self.samples.lock() else {
            return vec![now];
        };
        let mut out = thin(s.iter().copied(), s.len(), points.saturating_sub(1));
        out.push(now);
        out
    }
}

/// Every `step`-th of `len` items so that at most `points` remain, keeping the last.
fn thin(items: impl DoubleEndedIterator<Item = Sample>, len: usize, points: usize) -> Vec<Sample> {
    if points == 0 || len == 0 {
        return Vec::new();
    }
    let step = len.div_ceil(points);
    let mut out: Vec<Sample> = items.rev().step_by(step).collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64) -> Sample {
        Sample {
            at: t,
            totals: Totals::default(),
        }
    }

    #[test]
    fn thinning_keeps_the_newest_and_bounds_the_count() {
        let h = History::default();
        for t in 0..1000 {
            h.record(at(t));
        }
        let v = h.thinned(100, at(5000));
        assert!(v.len() <= 100, "{}", v.len());
        assert_eq!(v[v.len() - 2].at, 999);
        assert_eq!(v[v.len() - 1].at, 5000);
        assert!(v.windows(2).all(|w| w[0].at < w[1].at));
        assert_eq!(History::default().thinned(100, at(1)).len(), 1);
    }

    #[test]
    fn history_is_bounded() {
        let h = History::default();
        for t in 0..(KEPT as u64 + 10) {
            h.record(at(t));
        }
        assert_eq!(h.samples.lock().map(|s| s.len()).unwrap_or(0), KEPT);
    }
}
