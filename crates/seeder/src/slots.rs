//! Connection slots: the cap on connections in total and per address, and which connection
//! gives up its slot when a new one arrives at a cap.
//!
//! Every accepted connection asks [`Slots::admit`] for a slot before anything is read from it.
//! A connection's [`Activity`] records when it last did something useful (connected, was
//! unchoked, made a request) and whether it has requests outstanding. At a cap, the new
//! connection takes the slot of the *longest-idle* connection that has nothing outstanding
//! (of the same address at the per-address cap, of anyone at the total cap); that connection is
//! told through its [`Slot::evicted`] notice and closes. When every connection at the cap is
//! being served, the new one is refused (closed at once).
//!
//! Addresses are counted as the tracker counts them: an IPv4 address, or an IPv6 /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

pub(crate) use seedbucket_wire::host::address_key;

/// What a connection did lately, shared between it and the slot table.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Milliseconds after the table's epoch of the last useful thing the peer did.
    last_active_ms: AtomicU64,
    /// Requests queued or being read for the peer.
    busy: AtomicBool,
}

impl Activity {
    fn new(now_ms: u64) -> Self {
        Self {
            last_active_ms: AtomicU64::new(now_ms),
            busy: AtomicBool::new(false),
        }
    }
}

/// Why a connection was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address holds its cap of connections and all of them are being served.
    AddressFull,
    /// The seeder holds its cap of connections and all of them are being served.
    Full,
}

struct Entry {
    address: IpAddr,
    activity: Arc<Activity>,
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_address: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&e.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&e.address);
            }
        }
        Some(e)
    }

    /// The idle connection (nothing outstanding) that was active longest ago, among those of
    /// `address` or all.
    fn longest_idle(&self, address: Option<&IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| address.is_none_or(|a| *a == e.address))
            .filter(|(_, e)| !e.activity.busy.load(Ordering::Relaxed))
            .min_by_key(|(id, e)| (e.activity.last_active_ms.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
    }
}

/// The slot table of one seeder.
pub(crate) struct Slots {
    max_total: usize,
    max_per_address: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("max_total", &self.max_total)
            .field("max_per_address", &self.max_per_address)
            .field("held", &self.held())
            .finish()
    }
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Connections holding a slot.
    pub(crate) fn held(&self) -> usize {
        self.lock().conns.len()
    }

    /// A slot for a connection from `ip`, taking an idle connection's slot at a cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let address = address_key(ip);
        let now = self.now_ms();
        let mut t = self.lock();
        let victim = if t.per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            Some(t.longest_idle(Some(&address)).ok_or(Refused::AddressFull)?)
        } else if t.conns.len() >= self.max_total {
            Some(t.longest_idle(None).ok_or(Refused::Full)?)
        } else {
            None
        };
        if let Some(gone) = victim.and_then(|v| t.remove(v)) {
            // `notify_one` keeps the notice if the connection is not waiting for it yet.
            gone.evicted.notify_one();
        }
        let id = t.next;
        t.next += 1;
        let activity = Arc::new(Activity::new(now));
        let evicted = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                address,
                activity: Arc::clone(&activity),
                evicted: Arc::clone(&evicted),
            },
        );
        *t.per_address.entry(address).or_insert(0) += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            id,
            activity,
            evicted,
        })
    }
}

/// A connection's slot; given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    activity: Arc<Activity>,
    evicted: Arc<Notify>,
}

impl Slot {
    /// The peer did something useful now (connected, was unchoked, made a request).
    pub(crate) fn touch(&self) {
        self.activity
            .last_active_ms
            .store(self.slots.now_ms(), Ordering::Relaxed);
    }

    /// Whether the peer has requests outstanding (such a connection is never evicted).
    pub(crate) fn set_busy(&self, busy: bool) {
        self.activity.busy.store(busy, Ordering::Relaxed);
    }

    /// Completes once a newer connection took this slot.
    pub(crate) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn is_evicted(s: &Slot) -> bool {
        let fut = s.evicted.notified();
        tokio::pin!(fut);
        // A stored notice completes the future at its first poll.
        futures::FutureExt::now_or_never(fut).is_some()
    }

    #[test]
    fn per_address_cap_takes_the_longest_idle_of_that_address() {
        let slots = Slots::new(100, 2);
        let a = slots.admit(ip("10.0.0.1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = slots.admit(ip("10.0.0.1")).unwrap();
        let other = slots.admit(ip("10.0.0.2")).unwrap();
        // a is the longest idle of 10.0.0.1: the third connection takes its slot.
        let c = slots.admit(ip("10.0.0.1")).unwrap();
        assert!(is_evicted(&a));
        assert!(!is_evicted(&b) && !is_evicted(&other) && !is_evicted(&c));
        assert_eq!(slots.held(), 3);
        // Busy connections keep their slots; with all busy the newcomer is refused.
        b.set_busy(true);
        c.set_busy(true);
        assert_eq!(
            slots.admit(ip("10.0.0.1")).err(),
            Some(Refused::AddressFull)
        );
        // IPv6 addresses of one /64 share a cap.
        let _x = slots.admit(ip("2001:db8::1")).unwrap();
        let _y = slots.admit(ip("2001:db8::2")).unwrap();
        b.set_busy(false);
        drop(a);
        assert_eq!(slots.held(), 5);
        assert_eq!(address_key(ip("2001:db8::1:2:3:4")), ip("2001:db8::"));
        assert_eq!(address_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn total_cap_takes_the_longest_idle_of_anyone() {
        let slots = Slots::new(3, 8);
        let a = slots.admit(ip("10.0.0.1")).unwrap();
        let b = slots.admit(ip("10.0.0.2")).unwrap();
        let c = slots.admit(ip("10.0.0.3")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // a made a request lately; b is being served; c idles longest.
        a.touch();
        b.set_busy(true);
        let d = slots.admit(ip("10.0.0.4")).unwrap();
        assert!(is_evicted(&c));
        assert!(!is_evicted(&a) && !is_evicted(&b));
        a.set_busy(true);
        d.set_busy(true);
        assert_eq!(slots.admit(ip("10.0.0.5")).err(), Some(Refused::Full));
        drop(d);
        assert!(slots.admit(ip("10.0.0.5")).is_ok());
    }
}
