//! A request body that cannot pin the server: it stops at its cap, it is cut when the client
//! stalls or trickles, and a body that is buffered in memory first takes its share of a
//! global budget. Why a body was cut is left in a [`BodyReport`] the front reads to answer
//! with S3's error (the codec behind it would only see a failed stream).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::body_limits::{EXCERPT_LEN, OverCap};

/// Limits on request bodies, shared by every connection of the S3 port.
#[derive(Debug)]
pub struct BodyLimits {
    /// A body that sends nothing for this long is cut (S3's RequestTimeout).
    pub idle_timeout: Duration,
    /// A body must average at least this many bytes per second over each `idle_timeout`
    /// window (0: no rate floor, only the idle timeout).
    pub min_rate: u64,
    /// Bytes of buffered bodies (configuration XML) held in memory at once, all requests.
    pub buffer_budget: Arc<Semaphore>,
    /// Total of `buffer_budget`.
    pub buffer_budget_bytes: usize,
    /// How long a buffered body waits for budget before the answer is 503 SlowDown.
    pub budget_wait: Duration,
}

impl BodyLimits {
    pub fn new(
        idle_timeout: Duration,
        min_rate: u64,
        buffer_budget_bytes: usize,
        budget_wait: Duration,
    ) -> Self {
        let buffer_budget_bytes = buffer_budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            idle_timeout,
            min_rate,
            buffer_budget: Arc::new(Semaphore::new(buffer_budget_bytes)),
            buffer_budget_bytes,
            budget_wait,
        }
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(30),
            1024,
            64 * 1024 * 1024,
            Duration::from_secs(2),
        )
    }
}

/// Why a body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// More than the cap arrived.
    TooLarge { over: OverCap, cap: u64 },
    /// Nothing arrived for the idle timeout, or less than the minimum rate over a window.
    Stalled,
    /// No budget for buffering it within the wait.
    NoBudget,
}

/// What the front learns about a body after the operation ran.
#[derive(Debug, Default)]
pub struct BodyReport {
    pub failure: Option<BodyFailure>,
    /// The first bytes of a buffered body (for the debug log of a refused one).
    pub head: Vec<u8>,
    /// Bytes received in all.
    pub received: u64,
    /// The buffer budget this body holds: given back when the report is dropped, after the
    /// operation that used the buffered bytes is done.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// The error the body stream ends with when cut.
#[derive(Debug, thiserror::Error)]
#[error("request body cut: {0:?}")]
pub struct BodyCut(pub BodyFailure);

/// The guarded body. `budget`: bytes to take from the buffer budget before reading (0 for a
/// streamed body).
pub struct GuardedBody<B> {
    inner: B,
    limits: Arc<BodyLimits>,
    cap: Option<(u64, OverCap)>,
    keep_head: bool,
    budget: u32,
    has_budget: bool,
    acquiring: Option<BoxFuture<'static, Option<OwnedSemaphorePermit>>>,
    budget_deadline: Option<Pin<Box<Sleep>>>,
    timer: Pin<Box<Sleep>>,
    last_data: Instant,
    window_start: Instant,
    window_bytes: u64,
    /// When the last frame was handed out: the time until the next poll is the reader's,
    /// not the client's, and does not count against the client.
    handed_out_at: Option<Instant>,
    report: Arc<Mutex<BodyReport>>,
    failed: Option<BodyFailure>,
}

impl<B> GuardedBody<B> {
    pub fn new(
        inner: B,
        limits: Arc<BodyLimits>,
        cap: Option<(u64, OverCap)>,
        buffered: bool,
        report: Arc<Mutex<BodyReport>>,
    ) -> Self {
        let now = Instant::now();
        let budget = if buffered {
            cap.map_or(0, |(c, _)| c)
                .min(limits.buffer_budget_bytes as u64)
                .try_into()
                .unwrap_or(u32::MAX)
        } else {
            0
        };
        let timer = Box::pin(tokio::time::sleep_until(now + limits.idle_timeout));
        Self {
            inner,
            limits,
            cap,
            keep_head: buffered,
            budget,
            has_budget: false,
            acquiring: None,
            budget_deadline: None,
            timer,
            last_data: now,
            window_start: now,
            window_bytes: 0,
            handed_out_at: None,
            report,
            failed: None,
        }
    }

    /// Takes only what the declared length needs from the budget.
    pub fn with_declared_length(mut self, len: Option<u64>) -> Self {
        if let Some(len) = len {
            self.budget = self.budget.min(u32::try_from(len).unwrap_or(u32::MAX));
        }
        self
    }

    fn fail(&mut self, why: BodyFailure) -> Poll<Option<Result<Frame<Bytes>, BodyCut>>> {
        self.failed = Some(why);
        if let Ok(mut r) = self.report.lock() {
            r.failure.get_or_insert(why);
        }
        Poll::Ready(Some(Err(BodyCut(why))))
    }

    /// Waits for buffer budget; `Ready(false)` when the wait ran out.
    fn poll_budget(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.budget == 0 || self.has_budget {
            return Poll::Ready(true);
        }
        let n = self.budget;
        let sem = self.limits.buffer_budget.clone();
        let wait = self.limits.budget_wait;
        let fut = self
            .acquiring
            .get_or_insert_with(|| Box::pin(async move { sem.acquire_many_owned(n).await.ok() }));
        if let Poll::Ready(permit) = fut.as_mut().poll(cx) {
            self.acquiring = None;
            self.budget_deadline = None;
            self.has_budget = permit.is_some();
            if let Ok(mut r) = self.report.lock() {
                r.permit = permit;
            }
            return Poll::Ready(self.has_budget);
        }
        let deadline = self
            .budget_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.acquiring = None;
            return Poll::Ready(false);
        }
        Poll::Pending
    }

    /// Checks the idle timeout and the rate floor; re-arms the timer for the next check.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let idle = self.limits.idle_timeout;
            if now >= self.last_data + idle {
                return Poll::Ready(());
            }
            if now >= self.window_start + idle {
                let needed = self.limits.min_rate.saturating_mul(idle.as_secs().max(1));
                if self.window_bytes < needed {
                    return Poll::Ready(());
                }
                self.window_start = now;
                self.window_bytes = 0;
            }
            let next = (self.last_data + idle).min(self.window_start + idle);
            self.timer.as_mut().reset(next);
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(why) = this.failed {
            return Poll::Ready(Some(Err(Box::new(BodyCut(why)))));
        }
        if let Some(at) = this.handed_out_at.take() {
            let paused = at.elapsed();
            this.last_data += paused;
            this.window_start += paused;
        }
        match this.poll_budget(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(false) => return this.fail(BodyFailure::NoBudget).map(box_err),
            Poll::Ready(true) => {}
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    let mut received = 0;
                    if let Ok(mut r) = this.report.lock() {
                        r.received += len;
                        received = r.received;
                        if this.keep_head && r.head.len() < EXCERPT_LEN {
                            let take = (EXCERPT_LEN - r.head.len()).min(data.len());
                            r.head.extend_from_slice(&data[..take]);
                        }
                    }
                    if let Some((cap, over)) = this.cap
                        && received > cap
                    {
                        return this.fail(BodyFailure::TooLarge { over, cap }).map(box_err);
                    }
                    if len > 0 {
                        this.last_data = Instant::now();
                        this.window_bytes += len;
                    }
                }
                this.handed_out_at = Some(Instant::now());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.to_string().into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.poll_stall(cx) {
                Poll::Ready(()) => this.fail(BodyFailure::Stalled).map(box_err),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn box_err(
    p: Option<Result<Frame<Bytes>, BodyCut>>,
) -> Option<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> {
    p.map(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use http_body_util::StreamBody;

    type Chunks = StreamBody<
        futures::stream::BoxStream<'static, Result<Frame<Bytes>, std::convert::Infallible>>,
    >;

    fn chunks(parts: Vec<&'static [u8]>) -> Chunks {
        let s = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok(Frame::data(Bytes::from_static(p)))),
        );
        StreamBody::new(Box::pin(s) as futures::stream::BoxStream<'static, _>)
    }

    fn limits(idle_ms: u64, rate: u64, budget: usize) -> Arc<BodyLimits> {
        Arc::new(BodyLimits::new(
            Duration::from_millis(idle_ms),
            rate,
            budget,
            Duration::from_millis(100),
        ))
    }

    #[tokio::test]
    async fn a_body_within_its_cap_passes_whole() {
        let report = Arc::default();
        let b = GuardedBody::new(
            chunks(vec![b"<a>", b"</a>"]),
            limits(1000, 0, 1 << 20),
            Some((7, OverCap::MaxMessageLengthExceeded)),
            true,
            Arc::clone(&report),
        );
        let bytes = b.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"<a></a>");
        let r = report.lock().unwrap();
        assert_eq!(r.failure, None);
        assert_eq!(r.head, b"<a></a>");
        assert_eq!(r.received, 7);
    }

    #[tokio::test]
    async fn a_body_over_its_cap_is_cut_with_the_cap_error() {
        let report = Arc::default();
        let b = GuardedBody::new(
            chunks(vec![b"0123", b"4567", b"89"]),
            limits(1000, 0, 1 << 20),
            Some((6, OverCap::MalformedXml)),
            true,
            Arc::clone(&report),
        );
        assert!(b.collect().await.is_err());
        assert_eq!(
            report.lock().unwrap().failure,
            Some(BodyFailure::TooLarge {
                over: OverCap::MalformedXml,
                cap: 6
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_after_the_idle_timeout() {
        let report: Arc<Mutex<BodyReport>> = Arc::default();
        let s = futures::stream::iter(vec![Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"some"),
        ))])
        .chain(futures::stream::pending());
        let body = StreamBody::new(s);
        let b = GuardedBody::new(
            body,
            limits(500, 0, 1 << 20),
            None,
            false,
            Arc::clone(&report),
        );
        let started = Instant::now();
        assert!(b.collect().await.is_err());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(1100));
        assert_eq!(report.lock().unwrap().failure, Some(BodyFailure::Stalled));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_floor_is_cut() {
        let report: Arc<Mutex<BodyReport>> = Arc::default();
        // One byte every 200 ms: 5 B/s against a floor of 100 B/s.
        let s = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
                (),
            ))
        });
        let b = GuardedBody::new(
            StreamBody::new(Box::pin(s)),
            limits(1000, 100, 1 << 20),
            None,
            false,
            Arc::clone(&report),
        );
        assert!(b.collect().await.is_err());
        assert_eq!(report.lock().unwrap().failure, Some(BodyFailure::Stalled));
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_by_the_reader_does_not_count_against_the_client() {
        let report: Arc<Mutex<BodyReport>> = Arc::default();
        let mut b = GuardedBody::new(
            chunks(vec![b"a", b"b"]),
            limits(100, 0, 1 << 20),
            None,
            false,
            Arc::clone(&report),
        );
        assert!(b.frame().await.unwrap().is_ok());
        // The reader (a slow disk) takes longer than the idle timeout between reads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(b.frame().await.unwrap().is_ok());
        assert!(b.frame().await.is_none());
        assert_eq!(report.lock().unwrap().failure, None);
    }

    #[tokio::test(start_paused = true)]
    async fn buffered_bodies_wait_for_budget_then_get_slow_down() {
        let lim = limits(1000, 0, 10);
        let held = lim
            .buffer_budget
            .clone()
            .acquire_many_owned(8)
            .await
            .unwrap();
        let report: Arc<Mutex<BodyReport>> = Arc::default();
        let b = GuardedBody::new(
            chunks(vec![b"12345"]),
            lim.clone(),
            Some((5, OverCap::MaxMessageLengthExceeded)),
            true,
            Arc::clone(&report),
        );
        assert!(b.collect().await.is_err());
        assert_eq!(report.lock().unwrap().failure, Some(BodyFailure::NoBudget));
        drop(held);
        // With the budget back, the same body passes, and gives its share back after.
        let report: Arc<Mutex<BodyReport>> = Arc::default();
        let b = GuardedBody::new(
            chunks(vec![b"12345"]),
            lim.clone(),
            Some((5, OverCap::MaxMessageLengthExceeded)),
            true,
            Arc::clone(&report),
        );
        assert!(b.collect().await.is_ok());
        assert_eq!(lim.buffer_budget.available_permits(), 5);
        drop(report);
        assert_eq!(lim.buffer_budget.available_permits(), 10);
    }

    #[tokio::test]
    async fn the_declared_length_bounds_the_budget_taken() {
        let lim = limits(1000, 0, 100);
        let b = GuardedBody::new(
            chunks(vec![b"12"]),
            lim.clone(),
            Some((50, OverCap::MaxMessageLengthExceeded)),
            true,
            Arc::default(),
        )
        .with_declared_length(Some(2));
        assert_eq!(b.budget, 2);
    }

    use futures::StreamExt;
}
