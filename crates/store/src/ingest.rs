//! The write path: a request body becomes a fsynced temporary file plus its digests.
//!
//! The async side coalesces the body into 1 MiB buffers and hands each buffer (a cheap `Bytes`
//! clone) to two blocking workers: one writes the file, the other hashes. IO and hashing overlap,
//! memory stays bounded by the channel depths, and no byte is read back. Piece hashers for the
//! BitTorrent metadata plug in as more hashing work on the same buffers.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::blob::BlobDir;
use crate::digest::{BodyHasher, ChecksumSelection, Digests};
use crate::error::{Result, StoreError};

const CHUNK: usize = 1024 * 1024;
const DEPTH: usize = 8;
/// Bytes written between intermediate `fdatasync` calls of a large body.
const SYNC_EVERY: usize = 32 * 1024 * 1024;

/// A completely received, fsynced body that no metadata names yet. Dropping it removes the file.
#[derive(Debug)]
pub struct Staged {
    pub(crate) id: String,
    path: PathBuf,
    pub size: u64,
    pub digests: Digests,
    armed: bool,
}

impl Staged {
    /// Called once the file has been moved into the blob tree.
    pub(crate) fn disarm(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.id)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes the temporary file if staging fails half-way (client gone, bad body, too large).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Receives `body` into a new temporary file, hashing as it goes.
/// Fails with `EntityTooLarge` past `max_size` bytes and `IncompleteBody` if `expected_size`
/// is given and not met exactly.
pub async fn stage<S, E>(
    blobs: &BlobDir,
    mut body: S,
    expected_size: Option<u64>,
    max_size: u64,
    checksums: ChecksumSelection,
) -> Result<Staged>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if expected_size.is_some_and(|n| n > max_size) {
        return Err(StoreError::EntityTooLarge);
    }
    let id = BlobDir::new_id();
    let path = blobs.tmp_path(&id);
    let file = File::create_new(&path)?;
    let mut guard = TmpGuard(Some(path.clone()));

    let (write_tx, mut write_rx) = mpsc::channel::<Bytes>(DEPTH);
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = file;
        let mut unsynced = 0usize;
        while let Some(buf) = write_rx.blocking_recv() {
            file.write_all(&buf)?;
            unsynced += buf.len();
            // Write back as we go, so the final fsync has little left to wait for.
            if unsynced >= SYNC_EVERY {
                file.sync_data()?;
                unsynced = 0;
            }
        }
        file.sync_all()
    });
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = BodyHasher::new(checksums);
        while let Some(buf) = hash_rx.blocking_recv() {
            hasher.update(&buf);
        }
        hasher.finish()
    });

    let mut size: u64 = 0;
    let mut pending = BytesMut::with_capacity(CHUNK);
    let mut failure: Option<StoreError> = None;
    loop {
        let next = body.next().await;
        let flush = match &next {
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                if size > max_size || expected_size.is_some_and(|n| size > n) {
                    failure = Some(if size > max_size {
                        StoreError::EntityTooLarge
                    } else {
                        StoreError::IncompleteBody
                    });
                    break;
                }
                pending.extend_from_slice(chunk);
                pending.len() >= CHUNK
            }
            Some(Err(e)) => {
                failure = Some(StoreError::Body(e.to_string()));
                break;
            }
            None => true,
        };
        if flush && !pending.is_empty() {
            let buf = pending.split().freeze();
            pending.reserve(CHUNK);
            // A send fails only if a worker died; its own error is reported below.
            if write_tx.send(buf.clone()).await.is_err() || hash_tx.send(buf).await.is_err() {
                break;
            }
        }
        if next.is_none() {
            break;
        }
    }
    drop(write_tx);
    drop(hash_tx);
    let written = writer.await?;
    let digests = hasher.await?;
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    if expected_size.is_some_and(|n| n != size) {
        return Err(StoreError::IncompleteBody);
    }
    guard.0 = None;
    Ok(Staged {
        id,
        path,
        size,
        digests,
        armed: true,
    })
}
