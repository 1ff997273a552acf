//! SSE-C on the data path: an encrypting body adapter for the ingest (plaintext digests are
//! taken before encryption, so Content-MD5 and checksums still describe what the client sent),
//! and decrypted range reads over an object's segments (each segment is its own ciphertext
//! stream with its own salt; see [`crate::sse`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::ObjectReader;
use crate::digest::{BodyHasher, ChecksumSelection, Digests};
use crate::error::{Result, StoreError};
use crate::ingest::{self, Staged};
use crate::records::ObjectRecord;
use crate::server_keys::ServerKeys;
use crate::sse::{self, CustomerKey, Encryptor, RangeDecryptor, SseError, SseParams};

/// What the adapter learned once the body ended.
struct Outcome {
    digests: Digests,
    params: SseParams,
    plain_len: u64,
}

/// Hashes and encrypts a body on its way to the ingest.
struct EncryptingBody<S> {
    inner: S,
    state: Option<(Encryptor, BodyHasher)>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

impl<S, E> Stream for EncryptingBody<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = std::result::Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.state.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.to_string()))),
                Poll::Ready(Some(Ok(chunk))) => {
                    let Some((enc, hasher)) = self.state.as_mut() else {
                        return Poll::Ready(None);
                    };
                    hasher.update(&chunk);
                    let mut out = Vec::with_capacity(chunk.len() + sse::TAG_SIZE);
                    if let Err(e) = enc.update(&chunk, &mut out) {
                        return Poll::Ready(Some(Err(e.to_string())));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(None) => {
                    let Some((enc, hasher)) = self.state.take() else {
                        return Poll::Ready(None);
                    };
                    let plain_len = enc.plaintext_len();
                    let mut out = Vec::new();
                    match enc.finish(&mut out) {
                        Ok(params) => {
                            if let Ok(mut slot) = self.outcome.lock() {
                                *slot = Some(Outcome {
                                    digests: hasher.finish(),
                                    params,
                                    plain_len,
                                });
                            }
                            return Poll::Ready(Some(Ok(Bytes::from(out))));
                        }
                        Err(e) => return Poll::Ready(Some(Err(e.to_string()))),
                    }
                }
            }
        }
    }
}

impl crate::embedded::Embedded {
    /// Like [`crate::Store::stage`], encrypting with the customer's key.
    /// Returns the staged ciphertext and the digests of the plaintext.
    pub async fn stage_encrypted<S, E>(
        &self,
        body: S,
        expected_plain_size: Option<u64>,
        checksums: ChecksumSelection,
        key: &CustomerKey,
        part: bool,
    ) -> Result<(Staged, Digests)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let outcome = Arc::new(Mutex::new(None));
        let encryptor = Encryptor::new(key).map_err(|e| StoreError::Body(e.to_string()))?;
        let adapter = EncryptingBody {
            inner: body,
            state: Some((encryptor, BodyHasher::new(checksums))),
            outcome: outcome.clone(),
        };
        let mut staged = ingest::stage(
            &self.inner.blobs,
            adapter,
            expected_plain_size.map(sse::ciphertext_len),
            sse::ciphertext_len(crate::MAX_PUT_SIZE),
            if part { 0 } else { crate::INLINE_MAX },
            ChecksumSelection::default(),
            false,
        )
        .await?;
        let Outcome {
            digests,
            params,
            plain_len,
        } = outcome
            .lock()
            .ok()
            .and_then(|mut o| o.take())
            .ok_or(StoreError::IncompleteBody)?;
        staged.sse = Some(params);
        staged.plain_size = plain_len;
        Ok((staged, digests))
    }
}

/// Checks `key` against every encrypted segment of `rec` (a wrong key touches no data).
pub fn verify_key(rec: &ObjectRecord, key: &CustomerKey) -> std::result::Result<(), SseError> {
    for seg in &rec.segments {
        if let Some(p) = &seg.sse {
            p.verify(key)?;
        }
    }
    Ok(())
}

/// One segment's share of a plaintext range read.
struct SegmentRead {
    decryptor: RangeDecryptor,
    /// Stored bytes this segment contributes to the read.
    stored_len: u64,
}

/// How to read plaintext `[start, end)`: each touched segment's decryptor, and the contiguous
/// stored range they need (a partial first segment, whole middle ones, a partial last one).
struct DecryptPlan {
    segments: Vec<SegmentRead>,
    stored: Option<(u64, u64)>,
}

impl ObjectReader {
    /// Streams plaintext bytes `[start, end)` of an SSE-C object, decrypting with `key`
    /// (checked first).
    pub fn decrypted_stream(
        self,
        key: &CustomerKey,
        start: u64,
        end: u64,
    ) -> std::result::Result<mpsc::Receiver<std::io::Result<Bytes>>, SseError> {
        let plan = self.plan(|_| Some(key), start, end)?;
        Ok(self.run(plan))
    }

    /// Streams plaintext bytes `[start, end)` of an SSE-S3 object: each segment decrypted with
    /// the master key it names. A failure arrives as the stream's error.
    pub(crate) fn decrypted_with_server_keys(
        self,
        keys: &ServerKeys,
        start: u64,
        end: u64,
    ) -> mpsc::Receiver<std::io::Result<Bytes>> {
        match self.plan(server_key_of(keys), start, end) {
            Ok(plan) => self.run(plan),
            Err(e) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(Err(e.into()));
                rx
            }
        }
    }

    /// `len` plaintext bytes at `offset` of an SSE-S3 object, for the seeder's random reads:
    /// the whole sealed chunks around them are read and authenticated.
    pub(crate) async fn read_decrypted(
        self: Arc<Self>,
        keys: &ServerKeys,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.record.size)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "read past the end")
            })?;
        let plan = self.plan(server_key_of(keys), offset, end)?;
        let Some((lo, hi)) = plan.stored else {
            return Ok(Bytes::new());
        };
        let stored_len = usize::try_from(hi - lo).map_err(std::io::Error::other)?;
        let stored = self.clone().read_stored(lo, stored_len).await?;
        let mut out = Vec::with_capacity(len);
        let mut at = 0usize;
        for mut seg in plan.segments {
            let n = usize::try_from(seg.stored_len).map_err(std::io::Error::other)?;
            let piece = stored
                .get(at..at + n)
                .ok_or_else(|| std::io::Error::from(SseError::Truncated))?;
            seg.decryptor.update(piece, &mut out)?;
            seg.decryptor.finish()?;
            at += n;
        }
        Ok(Bytes::from(out))
    }

    fn plan<'k>(
        &self,
        key_of: impl Fn(&SseParams) -> Option<&'k CustomerKey>,
        start: u64,
        end: u64,
    ) -> std::result::Result<DecryptPlan, SseError> {
        let mut segments: Vec<SegmentRead> = Vec::new();
        let (mut plain_at, mut stored_at) = (0u64, 0u64);
        let (mut stored_lo, mut stored_hi) = (None, 0u64);
        for seg in &self.record.segments {
            let plain_len = ObjectRecord::segment_plain_len(seg);
            let (lo, hi) = (start.max(plain_at), end.min(plain_at + plain_len));
            if lo < hi || (plain_len == 0 && start == end && segments.is_empty()) {
                let params = seg.sse.as_ref().ok_or(SseError::Cipher)?;
                let key = key_of(params).ok_or(SseError::KeyMismatch)?;
                params.verify(key)?;
                let decryptor =
                    RangeDecryptor::new(key, params, lo - plain_at, hi - plain_at, plain_len)?;
                let (clo, chi) = decryptor.ciphertext_range();
                stored_lo.get_or_insert(stored_at + clo);
                stored_hi = stored_at + chi;
                segments.push(SegmentRead {
                    decryptor,
                    stored_len: chi - clo,
                });
            }
            plain_at += plain_len;
            stored_at += seg.len;
        }
        Ok(DecryptPlan {
            segments,
            stored: stored_lo.map(|lo| (lo, stored_hi)),
        })
    }

    /// Reads the plan's stored bytes and streams their plaintext.
    fn run(self, plan: DecryptPlan) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(4);
        let Some((lo, hi)) = plan.stored else {
            return rx;
        };
        let plan = plan.segments;
        let mut stored = self.stored_stream(lo, hi);
        tokio::spawn(async move {
            let mut plan = plan.into_iter();
            let mut current = plan.next();
            let mut left = current.as_ref().map(|c| c.stored_len).unwrap_or(0);
            while let Some(item) = stored.recv().await {
                let mut chunk = match item {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                while !chunk.is_empty() {
                    let Some(seg) = current.as_mut() else {
                        let _ = tx.send(Err(SseError::TrailingData.into())).await;
                        return;
                    };
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                    let piece = chunk.split_to(take);
                    left -= take as u64;
                    let mut out = Vec::with_capacity(piece.len());
                    if let Err(e) = seg.decryptor.update(&piece, &mut out) {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                    if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                    if left == 0 {
                        if let Some(done) = current.take()
                            && let Err(e) = done.decryptor.finish()
                        {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                        current = plan.next();
                        left = current.as_ref().map(|c| c.stored_len).unwrap_or(0);
                    }
                }
            }
            if current.is_some() {
                let _ = tx.send(Err(SseError::Truncated.into())).await;
            }
        });
        rx
    }
}

/// The master key an SSE-S3 segment names.
fn server_key_of<'k>(keys: &'k ServerKeys) -> impl Fn(&SseParams) -> Option<&'k CustomerKey> + 'k {
    move |p| p.server_key.as_deref().and_then(|id| keys.get(id))
}
