//! Connections of the S3 port (S3, the HTTP tracker and the webseed share it): how many may
//! be open in all and from one address, and when one that does nothing useful is closed —
//! a request head that takes too long to arrive (slowloris), or a connection idle between
//! requests, or whose response the client stopped reading.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Limits on the connections of the S3 port.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A request head must be complete this long after its first byte (or after the previous
    /// response, for a kept-alive connection that starts sending).
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes moving is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once, all clients (0: no limit).
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no limit).
    pub max_per_address: usize,
    /// Addresses the per-address cap does not apply to (load balancers, --trusted-proxy).
    pub exempt: Vec<IpAddr>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_per_address: 256,
            exempt: Vec::new(),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyConnections,
    TooManyFromAddress,
}

/// Counts open connections, in all and per address.
#[derive(Debug, Default)]
pub struct ConnCounter {
    limits: ConnLimits,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection's place in the counts; given back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    counter: Arc<ConnCounter>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.counter.total.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut m) = self.counter.per_address.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl ConnCounter {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            total: AtomicUsize::new(0),
            per_address: Mutex::default(),
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip`, or says which cap it would exceed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let ip = canonical(ip);
        let max = self.limits.max_connections;
        if self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refused::TooManyConnections);
        }
        let exempt = self.limits.exempt.iter().any(|e| canonical(*e) == ip);
        let per = self.limits.max_per_address;
        let mut m = match self.per_address.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = m.entry(ip).or_insert(0);
        if per != 0 && !exempt && *n >= per {
            if *n == 0 {
                m.remove(&ip);
            }
            drop(m);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::TooManyFromAddress);
        }
        *n += 1;
        Ok(ConnSlot {
            counter: self.clone(),
            ip,
        })
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The HTTP answer to a connection over a cap, written before closing it.
pub fn refusal_response(why: Refused) -> Vec<u8> {
    let message = match why {
        Refused::TooManyConnections => "Too many connections; retry later.",
        Refused::TooManyFromAddress => "Too many connections from your address; retry later.",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>{message}</Message></Error>"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What one connection is doing, in milliseconds since it was accepted: shared by its IO
/// (bytes moving), its requests (in progress or not) and its watchdog.
#[derive(Debug)]
pub struct ConnActivity {
    started: Instant,
    in_flight: AtomicUsize,
    /// When the last request finished (its response head was handed over), or 0.
    idle_since: AtomicU64,
    /// First byte read while no request was in progress, +1 (0: none since then).
    head_started: AtomicU64,
    last_write: AtomicU64,
}

impl Default for ConnActivity {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
        }
    }
}

impl ConnActivity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request's head was parsed and its handler starts; the guard marks its end.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.load(Ordering::SeqCst) == 0
        {
            let _ = self.head_started.compare_exchange(
                0,
                self.now_ms() + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    fn wrote_some(&self) {
        self.last_write.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection should be closed if nothing changes (`None`: a request is in
    /// progress; check again later).
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last_write = self.last_write.load(Ordering::Relaxed);
        let head = self.head_started.load(Ordering::SeqCst);
        let ms = if head > 0 {
            (head - 1).max(last_write) + millis(limits.header_timeout)
        } else {
            self.idle_since.load(Ordering::SeqCst).max(last_write) + millis(limits.idle_timeout)
        };
        Some(self.started + Duration::from_millis(ms))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnActivity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves when the connection has been idle, or slow to send a request head, for longer
/// than the limits allow.
pub async fn watchdog(activity: Arc<ConnActivity>, limits: ConnLimits) {
    let busy_check = limits
        .header_timeout
        .min(limits.idle_timeout)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        match activity.deadline(&limits) {
            Some(deadline) if Instant::now() >= deadline => return,
            Some(deadline) => {
                // Bytes arriving or a request starting may move the deadline: look again
                // at most every `busy_check`.
                tokio::time::sleep_until(deadline.min(Instant::now() + busy_check)).await;
            }
            None => tokio::time::sleep(busy_check).await,
        }
    }
}

/// A connection's socket, noting bytes read and written in its [`ConnActivity`].
pub struct ActivityIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote_some();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote_some();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits(total: usize, per: usize) -> ConnLimits {
        ConnLimits {
            max_connections: total,
            max_per_address: per,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn per_address_and_total_caps() {
        let c = ConnCounter::new(limits(3, 2));
        let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        let s1 = c.admit(a).unwrap();
        let _s2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).unwrap_err(), Refused::TooManyFromAddress);
        // The mapped form of the same address is the same client.
        let mapped: IpAddr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into();
        assert_eq!(c.admit(mapped).unwrap_err(), Refused::TooManyFromAddress);
        let _s3 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).unwrap_err(), Refused::TooManyConnections);
        assert_eq!(c.open(), 3);
        drop(s1);
        assert_eq!(c.open(), 2);
        let _s4 = c.admit(a).unwrap();
    }

    #[test]
    fn exempt_addresses_and_no_limits() {
        let proxy: IpAddr = Ipv4Addr::new(10, 0, 0, 9).into();
        let c = ConnCounter::new(ConnLimits {
            exempt: vec![proxy],
            ..limits(0, 1)
        });
        let held: Vec<_> = (0..50).map(|_| c.admit(proxy).unwrap()).collect();
        assert_eq!(c.open(), 50);
        drop(held);
        assert_eq!(c.open(), 0);
        assert!(c.per_address.lock().unwrap().is_empty());
    }

    #[test]
    fn refusals_are_well_formed_http() {
        for why in [Refused::TooManyConnections, Refused::TooManyFromAddress] {
            let r = String::from_utf8(refusal_response(why)).unwrap();
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_slow_heads_end_the_watchdog() {
        let l = ConnLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            ..ConnLimits::default()
        };
        // Idle from the start: closed after the idle timeout.
        let a = Arc::new(ConnActivity::default());
        let t = Instant::now();
        watchdog(a, l.clone()).await;
        assert!(t.elapsed() >= Duration::from_secs(5) && t.elapsed() < Duration::from_secs(6));
        // A head started: closed after the header timeout.
        let a = Arc::new(ConnActivity::default());
        a.read_some();
        let t = Instant::now();
        watchdog(a.clone(), l.clone()).await;
        assert!(t.elapsed() >= Duration::from_secs(2) && t.elapsed() < Duration::from_secs(3));
        // A request in progress is never idle; its end starts the idle clock.
        let a = Arc::new(ConnActivity::default());
        let guard = a.request_started();
        let t = Instant::now();
        let dog = tokio::spawn(watchdog(a.clone(), l.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!dog.is_finished());
        drop(guard);
        dog.await.unwrap();
        assert!(t.elapsed() >= Duration::from_secs(35) && t.elapsed() < Duration::from_secs(37));
    }
}
