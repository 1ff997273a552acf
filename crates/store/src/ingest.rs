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
use seedbucket_torrent::{PieceHasher, PieceHashes, piece_length_for};

const CHUNK: usize = 1024 * 1024;
const DEPTH: usize = 8;
/// Bytes written between intermediate `fdatasync` calls of a large body.
const SYNC_EVERY: usize = 32 * 1024 * 1024;

/// Where a staged body is: small bodies stay in memory and are committed inside the metadata
/// transaction; larger ones are a fsynced temporary file.
#[derive(Debug)]
pub(crate) enum StagedBody {
    Inline(Bytes),
    File { path: PathBuf, armed: bool },
}

/// A completely received body that no metadata names yet. Dropping it removes its file.
#[derive(Debug)]
pub struct Staged {
    pub(crate) id: String,
    pub(crate) body: StagedBody,
    pub size: u64,
    pub digests: Digests,
    /// Torrent piece hashes, when the size was known up front (a PUT with Content-Length).
    pub pieces: Option<PieceHashes>,
    /// SSE-C: the body was encrypted on the way in (`size` is then the stored ciphertext
    /// length and `plain_size` the object's length).
    pub(crate) sse: Option<crate::sse::SseParams>,
    pub plain_size: u64,
}

impl Staged {
    /// Called once the file has been moved into the blob tree.
    pub(crate) fn disarm(&mut self) {
        if let StagedBody::File { armed, .. } = &mut self.body {
            *armed = false;
        }
    }

    /// The bytes of an inline body.
    pub(crate) fn inline(&self) -> Option<&Bytes> {
        match &self.body {
            StagedBody::Inline(b) => Some(b),
            StagedBody::File { .. } => None,
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let StagedBody::File { path, armed: true } = &self.body {
            let _ = std::fs::remove_file(path);
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

/// The two blocking workers of a body that goes to a file.
struct FileSink {
    write_tx: mpsc::Sender<Bytes>,
    hash_tx: mpsc::Sender<Bytes>,
    piece_tx: Option<mpsc::Sender<Bytes>>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    hasher: tokio::task::JoinHandle<Digests>,
    piece_hasher: Option<tokio::task::JoinHandle<PieceHashes>>,
    path: PathBuf,
    guard: TmpGuard,
}

impl FileSink {
    fn start(path: PathBuf, checksums: ChecksumSelection, pieces: Option<u64>) -> Result<Self> {
        let file = File::create_new(&path)?;
        let guard = TmpGuard(Some(path.clone()));
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
        // The torrent piece hashes (SHA-1 and SHA-256) on a third thread: MD5 alone is the
        // slowest digest, so the pieces never hold the upload back.
        let (piece_tx, piece_hasher) = match pieces {
            Some(piece_length) => {
                let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
                let handle = tokio::task::spawn_blocking(move || {
                    let mut h = PieceHasher::new(piece_length, true, true);
                    while let Some(buf) = rx.blocking_recv() {
                        h.update(&buf);
                    }
                    h.finish()
                });
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        Ok(Self {
            write_tx,
            hash_tx,
            piece_tx,
            writer,
            hasher,
            piece_hasher,
            path,
            guard,
        })
    }

    /// False if a worker died (its error is reported by `finish`).
    async fn send(&self, buf: Bytes) -> bool {
        if let Some(tx) = &self.piece_tx
            && tx.send(buf.clone()).await.is_err()
        {
            return false;
        }
        self.write_tx.send(buf.clone()).await.is_ok() && self.hash_tx.send(buf).await.is_ok()
    }

    async fn finish(self) -> Result<(PathBuf, Digests, Option<PieceHashes>, TmpGuard)> {
        drop(self.write_tx);
        drop(self.hash_tx);
        drop(self.piece_tx);
        let written = self.writer.await?;
        let digests = self.hasher.await?;
        let pieces = match self.piece_hasher {
            Some(h) => Some(h.await?),
            None => None,
        };
        written?;
        Ok((self.path, digests, pieces, self.guard))
    }
}

/// Receives `body`, hashing as it goes. A body of at most `inline_max` bytes is kept in memory;
/// a larger one goes to a new temporary file. Fails with `EntityTooLarge` past `max_size` bytes
/// and `IncompleteBody` if `expected_size` is given and not met exactly.
pub async fn stage<S, E>(
    blobs: &BlobDir,
    mut body: S,
    expected_size: Option<u64>,
    max_size: u64,
    inline_max: usize,
    checksums: ChecksumSelection,
    hash_pieces: bool,
) -> Result<Staged>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if expected_size.is_some_and(|n| n > max_size) {
        return Err(StoreError::EntityTooLarge);
    }
    let id = BlobDir::new_id();
    // Piece boundaries depend on the total size, so pieces are hashed on the way in only when
    // the size is declared; other bodies are hashed on their first ?torrent.
    let piece_length = expected_size.filter(|_| hash_pieces).map(piece_length_for);
    let mut sink: Option<FileSink> = None;
    let mut size: u64 = 0;
    let mut pending = BytesMut::new();
    let mut failure: Option<StoreError> = None;
    loop {
        let next = body.next().await;
        match &next {
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
            }
            Some(Err(e)) => {
                failure = Some(StoreError::Body(e.to_string()));
                break;
            }
            None => {}
        }
        if sink.is_none() && pending.len() > inline_max {
            sink = Some(FileSink::start(
                blobs.tmp_path(&id),
                checksums,
                piece_length,
            )?);
        }
        if let Some(s) = &sink
            && (pending.len() >= CHUNK || (next.is_none() && !pending.is_empty()))
        {
            let buf = pending.split().freeze();
            pending.reserve(CHUNK);
            if !s.send(buf).await {
                break;
            }
        }
        if next.is_none() {
            break;
        }
    }
    let finished = match sink {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    if let Some(e) = failure {
        return Err(e);
    }
    if expected_size.is_some_and(|n| n != size) {
        return Err(StoreError::IncompleteBody);
    }
    match finished {
        Some(result) => {
            let (path, digests, pieces, mut guard) = result?;
            guard.0 = None;
            Ok(Staged {
                id,
                body: StagedBody::File { path, armed: true },
                size,
                digests,
                pieces,
                sse: None,
                plain_size: size,
            })
        }
        None => {
            let data = pending.freeze();
            let mut hasher = BodyHasher::new(checksums);
            hasher.update(&data);
            let pieces = piece_length.map(|pl| {
                let mut h = PieceHasher::new(pl, true, true);
                h.update(&data);
                h.finish()
            });
            Ok(Staged {
                id,
                body: StagedBody::Inline(data),
                size,
                digests: hasher.finish(),
                pieces,
                sse: None,
                plain_size: size,
            })
        }
    }
}
