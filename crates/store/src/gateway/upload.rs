//! A backend upload whose last buffer is held back until the caller has checked the body.
//!
//! A PUT through the gateway streams to the backend as it arrives (no temporary copy), but
//! Content-MD5 and trailing checksums can only be checked once the whole body has been read.
//! So the request body handed to the backend sends every buffer but the last; the last one goes
//! out only when [`PendingUpload::complete`] is called. If the checks fail, or the client goes
//! away, the upload is dropped: the body ends with an error, the backend sees a request shorter
//! than its Content-Length and stores nothing. No partial object ever becomes visible.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};

/// The request body of a held-back upload (an `http_body::Body` for the S3 client).
pub(crate) struct HeldBackBody {
    input: mpsc::Receiver<Bytes>,
    input_ended: bool,
    held: Option<Bytes>,
    verdict: Option<oneshot::Receiver<bool>>,
    done: bool,
}

impl http_body::Body for HeldBackBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.input_ended {
                match this.input.poll_recv(cx) {
                    Poll::Ready(Some(buf)) => {
                        if let Some(previous) = this.held.replace(buf) {
                            return Poll::Ready(Some(Ok(Frame::data(previous))));
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        this.input_ended = true;
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            let verdict = match this.verdict.as_mut() {
                Some(rx) => match Pin::new(rx).poll(cx) {
                    Poll::Ready(v) => v.unwrap_or(false),
                    Poll::Pending => return Poll::Pending,
                },
                None => false,
            };
            this.verdict = None;
            this.done = true;
            return Poll::Ready(match (verdict, this.held.take()) {
                (true, Some(last)) => Some(Ok(Frame::data(last))),
                (true, None) => None,
                (false, _) => Some(Err(std::io::Error::other(
                    "upload abandoned before its body was verified",
                ))),
            });
        }
    }
}

use std::future::Future as _;

/// What the ingest pipeline feeds, and the upload it feeds.
pub(crate) struct RemoteBody {
    pub(crate) sender: mpsc::Sender<Bytes>,
    pub(crate) upload: PendingUpload,
}

/// A backend request in flight whose last buffer waits for a verdict.
#[derive(Debug)]
pub(crate) struct PendingUpload {
    verdict: Option<oneshot::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<Result<String>>>,
}

/// Buffers queued towards the backend, at most.
const DEPTH: usize = 8;

/// Makes the body for a backend request, and the handle that releases it. `send` runs the
/// request with that body and returns the backend's ETag.
pub(crate) fn held_back<F, Fut>(send: F) -> RemoteBody
where
    F: FnOnce(HeldBackBody) -> Fut,
    Fut: std::future::Future<Output = Result<String>> + Send + 'static,
{
    let (sender, input) = mpsc::channel(DEPTH);
    let (verdict_tx, verdict_rx) = oneshot::channel();
    let body = HeldBackBody {
        input,
        input_ended: false,
        held: None,
        verdict: Some(verdict_rx),
        done: false,
    };
    let task = tokio::spawn(send(body));
    RemoteBody {
        sender,
        upload: PendingUpload {
            verdict: Some(verdict_tx),
            task: Some(task),
        },
    }
}

impl PendingUpload {
    /// If the backend already answered (it can only be a refusal before the last buffer),
    /// returns its error; otherwise the upload is still waiting, as it should be.
    pub(crate) async fn check_early_failure(mut self) -> Result<Self> {
        if let Some(task) = self.task.take_if(|t| t.is_finished()) {
            return Err(match task.await? {
                Err(e) => e,
                Ok(_) => StoreError::Unavailable("the backend ended an upload early".into()),
            });
        }
        Ok(self)
    }

    /// Sends the last buffer and waits for the backend's answer: its ETag (unquoted).
    pub(crate) async fn complete(mut self) -> Result<String> {
        if let Some(v) = self.verdict.take() {
            let _ = v.send(true);
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Err(StoreError::Unavailable("upload already finished".into())),
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if let Some(v) = self.verdict.take() {
            let _ = v.send(false);
        }
        // The task ends by itself once its body fails; it holds nothing worth waiting for.
        drop(self.task.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn run(n: usize, release: Option<bool>) -> (Vec<u8>, bool) {
        let (out_tx, out_rx) = oneshot::channel();
        let remote = held_back(move |body| async move {
            let collected = body.collect().await;
            let _ = out_tx.send(collected.map(|c| c.to_bytes().to_vec()));
            Ok("etag".to_owned())
        });
        for i in 0..n {
            remote
                .sender
                .send(Bytes::from(vec![i as u8; 3]))
                .await
                .unwrap();
        }
        drop(remote.sender);
        match release {
            Some(true) => {
                assert_eq!(remote.upload.complete().await.unwrap(), "etag");
            }
            _ => drop(remote.upload),
        }
        match out_rx.await.unwrap() {
            Ok(bytes) => (bytes, true),
            Err(_) => (Vec::new(), false),
        }
    }

    #[tokio::test]
    async fn the_last_buffer_waits_for_the_verdict() {
        let (bytes, ok) = run(4, Some(true)).await;
        assert!(ok);
        assert_eq!(bytes, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        let (_, ok) = run(4, None).await;
        assert!(!ok, "an abandoned upload must end its body with an error");
        let (bytes, ok) = run(0, Some(true)).await;
        assert!(ok && bytes.is_empty());
    }
}
