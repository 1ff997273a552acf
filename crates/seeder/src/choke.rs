//! Upload slots per torrent, with fair rotation.
//!
//! A peer that says `interested` gets a slot (is unchoked) if one is free, else it waits in
//! line. Every `rotate_every`, if peers are waiting, the peers unchoked longest (at least one
//! period) are choked and go to the back of the line, and as many waiters are unchoked. A peer
//! that says `not interested` or leaves frees its slot for the first waiter.
//!
//! [`ChokerState`] is the pure bookkeeping (time passed in, decisions returned);
//! [`Choker`] wraps it for the connections, delivering each decision to the connection it names
//! through a watch channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A connection's id within the choker.
pub(crate) type PeerKey = u64;

/// `(peer, unchoked)`: the new state of one peer's upload slot.
pub(crate) type Decision = (PeerKey, bool);

/// Who is unchoked since when, and who waits, in order.
#[derive(Debug)]
pub(crate) struct ChokerState {
    max_unchoked: usize,
    unchoked: HashMap<PeerKey, Instant>,
    waiting: VecDeque<PeerKey>,
}

impl ChokerState {
    pub(crate) fn new(max_unchoked: usize) -> Self {
        Self {
            max_unchoked: max_unchoked.max(1),
            unchoked: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    pub(crate) fn unchoked(&self) -> usize {
        self.unchoked.len()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `peer` became interested.
    pub(crate) fn interested(&mut self, peer: PeerKey, now: Instant) -> Vec<Decision> {
        if self.unchoked.contains_key(&peer) || self.waiting.contains(&peer) {
            return Vec::new();
        }
        if self.unchoked.len() < self.max_unchoked {
            self.unchoked.insert(peer, now);
            vec![(peer, true)]
        } else {
            self.waiting.push_back(peer);
            Vec::new()
        }
    }

    /// `peer` is no longer interested: its slot (if any) goes to the first waiter.
    pub(crate) fn not_interested(&mut self, peer: PeerKey, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.unchoked.remove(&peer).is_some() {
            out.push((peer, false));
        }
        self.waiting.retain(|p| *p != peer);
        self.fill(now, &mut out);
        out
    }

    /// `peer` left: like [`not_interested`](Self::not_interested), without a decision for it.
    pub(crate) fn remove(&mut self, peer: PeerKey, now: Instant) -> Vec<Decision> {
        let mut out = self.not_interested(peer, now);
        out.retain(|(p, _)| *p != peer);
        out
    }

    /// Unchokes waiters while slots are free.
    fn fill(&mut self, now: Instant, out: &mut Vec<Decision>) {
        while self.unchoked.len() < self.max_unchoked {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.unchoked.insert(next, now);
            out.push((next, true));
        }
    }

    /// The periodic rotation: as many of the longest-unchoked peers (unchoked for at least
    /// `min_unchoked`) as there are waiters trade places with them.
    pub(crate) fn rotate(&mut self, now: Instant, min_unchoked: Duration) -> Vec<Decision> {
        let mut out = Vec::new();
        self.fill(now, &mut out);
        if self.waiting.is_empty() {
            return out;
        }
        let mut eligible: Vec<(Instant, PeerKey)> = self
            .unchoked
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= min_unchoked)
            .map(|(p, since)| (*since, *p))
            .collect();
        eligible.sort_unstable();
        let n = eligible.len().min(self.waiting.len());
        let incoming: Vec<PeerKey> = self.waiting.drain(..n).collect();
        for (_, p) in eligible.into_iter().take(n) {
            self.unchoked.remove(&p);
            self.waiting.push_back(p);
            out.push((p, false));
        }
        for p in incoming {
            self.unchoked.insert(p, now);
            out.push((p, true));
        }
        out
    }
}

/// The shared choker: [`ChokerState`] plus one watch channel per registered connection.
/// The slots of every torrent: each torrent has its own [`ChokerState`] (upload slots are per
/// torrent, so that peers of one swarm get distinct pieces and pass them on to each other,
/// rather than the seeder spreading itself thin over a whole swarm at once).
#[derive(Debug)]
pub(crate) struct Choker {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_torrent: usize,
    states: HashMap<String, ChokerState>,
    /// Each registered connection: its torrent and where its decisions go.
    peers: HashMap<PeerKey, (String, watch::Sender<bool>)>,
    next_key: PeerKey,
}

impl Inner {
    fn apply(&self, decisions: Vec<Decision>) {
        for (peer, unchoked) in decisions {
            if let Some((_, tx)) = self.peers.get(&peer) {
                tx.send_replace(unchoked);
            }
        }
    }
}

impl Choker {
    /// `per_torrent` upload slots for each torrent.
    pub(crate) fn new(per_torrent: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                per_torrent: per_torrent.max(1),
                states: HashMap::new(),
                peers: HashMap::new(),
                next_key: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A connection to `torrent` (any id naming the torrent) joins; it starts choked.
    pub(crate) fn register(&self, torrent: &str) -> (PeerKey, watch::Receiver<bool>) {
        let mut inner = self.lock();
        let key = inner.next_key;
        inner.next_key += 1;
        let (tx, rx) = watch::channel(false);
        inner.peers.insert(key, (torrent.to_owned(), tx));
        (key, rx)
    }

    pub(crate) fn interested(&self, peer: PeerKey, interested: bool) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some((torrent, _)) = inner.peers.get(&peer) else {
            return;
        };
        let torrent = torrent.clone();
        let slots = inner.per_torrent;
        let state = inner
            .states
            .entry(torrent)
            .or_insert_with(|| ChokerState::new(slots));
        let d = if interested {
            state.interested(peer, now)
        } else {
            state.not_interested(peer, now)
        };
        inner.apply(d);
    }

    pub(crate) fn unregister(&self, peer: PeerKey) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some((torrent, _)) = inner.peers.remove(&peer) else {
            return;
        };
        let mut d = Vec::new();
        if let Some(state) = inner.states.get_mut(&torrent) {
            d = state.remove(peer, now);
            if state.unchoked() == 0 && state.waiting() == 0 {
                inner.states.remove(&torrent);
            }
        }
        inner.apply(d);
    }

    pub(crate) fn rotate(&self, min_unchoked: Duration) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut all = Vec::new();
        for state in inner.states.values_mut() {
            all.extend(state.rotate(now, min_unchoked));
        }
        inner.apply(all);
    }

    /// (unchoked, waiting), over all torrents.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        inner
            .states
            .values()
            .fold((0, 0), |(u, w), s| (u + s.unchoked(), w + s.waiting()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    #[test]
    fn slots_and_waiters() {
        let t = Instant::now();
        let mut s = ChokerState::new(2);
        assert_eq!(s.interested(1, t), [(1, true)]);
        assert_eq!(s.interested(1, t), []);
        assert_eq!(s.interested(2, t), [(2, true)]);
        assert_eq!(s.interested(3, t), []);
        assert_eq!(s.interested(4, t), []);
        assert_eq!((s.unchoked(), s.waiting()), (2, 2));
        // A slot freed goes to the first waiter.
        assert_eq!(s.not_interested(1, t), [(1, false), (3, true)]);
        // A waiter leaving just leaves the line.
        assert_eq!(s.remove(4, t), []);
        assert_eq!(s.remove(3, t), []);
        assert_eq!((s.unchoked(), s.waiting()), (1, 0));
        assert_eq!(s.not_interested(9, t), []);
    }

    #[test]
    fn rotation_swaps_longest_unchoked() {
        let t0 = Instant::now();
        let mut s = ChokerState::new(2);
        s.interested(1, t0);
        s.interested(2, t0 + Duration::from_secs(5));
        s.interested(3, t0);
        // Nobody has held a slot for a whole period yet.
        assert_eq!(s.rotate(t0 + Duration::from_secs(9), PERIOD), []);
        // Peer 1 has: it yields to 3 and waits.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.rotate(t1, PERIOD), [(1, false), (3, true)]);
        // Next period: 2 (the longest unchoked) yields to 1.
        let t2 = t1 + PERIOD;
        assert_eq!(s.rotate(t2, PERIOD), [(2, false), (1, true)]);
        let t3 = t2 + PERIOD;
        assert_eq!(s.rotate(t3, PERIOD), [(3, false), (2, true)]);
    }

    #[test]
    fn rotation_without_waiters_changes_nothing() {
        let t0 = Instant::now();
        let mut s = ChokerState::new(1);
        s.interested(1, t0);
        assert_eq!(s.rotate(t0 + PERIOD * 5, PERIOD), []);
        assert_eq!(s.unchoked(), 1);
    }

    #[test]
    fn zero_slots_means_one() {
        let mut s = ChokerState::new(0);
        assert_eq!(s.interested(7, Instant::now()), [(7, true)]);
    }

    #[test]
    fn shared_choker_delivers() {
        let c = Choker::new(1);
        let (a, mut ra) = c.register("t");
        let (b, rb) = c.register("t");
        c.interested(a, true);
        c.interested(b, true);
        assert!(*ra.borrow_and_update());
        assert!(!*rb.borrow());
        c.rotate(Duration::ZERO);
        assert!(!*ra.borrow());
        assert!(*rb.borrow());
        assert_eq!(c.counts(), (1, 1));
        c.unregister(b);
        assert!(*ra.borrow());
        assert_eq!(c.counts(), (1, 0));
    }

    #[test]
    fn slots_are_per_torrent() {
        let c = Choker::new(1);
        let (a, ra) = c.register("one");
        let (b, rb) = c.register("two");
        let (x, rx) = c.register("one");
        c.interested(a, true);
        c.interested(b, true);
        c.interested(x, true);
        // One slot each: a and b are served at once, x waits for a.
        assert!(*ra.borrow() && *rb.borrow() && !*rx.borrow());
        assert_eq!(c.counts(), (2, 1));
        c.unregister(a);
        assert!(*rx.borrow());
    }
}
