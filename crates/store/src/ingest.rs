//! The write path: a request body becomes a fsynced temporary file plus its digests.
//!
//! The async side cuts the body into aligned 1 MiB buffers and hands each buffer (a cheap
//! `Bytes` clone) to blocking workers: one writes the file (with direct IO where it can, see
//! [`crate::body_file`]), one computes the S3 digests, and one the torrent piece hashes. IO and
//! hashing overlap, memory stays bounded by the channel depths, and no byte is read back.

use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::background::spawn_low_priority;
use crate::blob::BlobDir;
use crate::body_file::{AlignedChunk, BodyFile, CHUNK};
use crate::digest::{BodyHasher, ChecksumSelection, Digests};
use crate::error::{Result, StoreError};
use seedbucket_torrent::{PieceHasher, PieceHashes, piece_length_for};

const DEPTH: usize = 8;
/// Bytes written between intermediate `fdatasync` calls of a large body.
const SYNC_EVERY: usize = 32 * 1024 * 1024;

/// Where a staged body is: small bodies stay in memory and are committed inside the metadata
/// transaction; larger ones are a fsynced temporary file.
#[derive(Debug)]
pub(crate) enum StagedBody {
    Inline(Bytes),
    File(StagedFile),
    /// Gateway mode: the body went to the backend, all but its last buffer, which waits for
    /// [`crate::gateway::PendingUpload::complete`] (dropping it abandons the upload).
    Remote(crate::gateway::PendingUpload),
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
        if let StagedBody::File(f) = &mut self.body {
            f.armed = false;
        }
    }

    /// Takes the body out (the caller now owns what it holds).
    pub(crate) fn into_body(self) -> StagedBody {
        self.body
    }

    /// The bytes of an inline body.
    pub(crate) fn inline(&self) -> Option<&Bytes> {
        match &self.body {
            StagedBody::Inline(b) => Some(b),
            StagedBody::File(_) | StagedBody::Remote(_) => None,
        }
    }
}

/// A fsynced temporary file holding a body. Removed when dropped unless published, whether its
/// `Staged` was dropped or staging failed after the body was complete.
#[derive(Debug)]
pub(crate) struct StagedFile {
    pub(crate) path: PathBuf,
    armed: bool,
}

impl Drop for StagedFile {
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

/// The torrent piece hashes, v1 (SHA-1) and v2 (SHA-256), on a thread each beside the MD5
/// thread.
///
/// MD5 is one serial chain that alone nearly fills a core, so it sets the pace of a PUT; the
/// piece hashes are work that may trail it by a few buffers. Their threads therefore run at a
/// lowered priority (see [`crate::background`]): on two cores, with the piece threads at the same priority
/// the scheduler kept taking the core from MD5 and a 1 GiB PUT ran at 0.84 of its speed without
/// piece hashing (mean of 8); at nice 10 it runs at 0.94. Where cores are spare the priority
/// changes nothing, and under load the bounded channels keep the piece threads from falling
/// more than [`DEPTH`] buffers behind: the PUT waits for them rather than starving them.
pub(crate) struct PieceWorkers {
    piece_length: u64,
    v1_tx: mpsc::Sender<Bytes>,
    v2_tx: mpsc::Sender<Bytes>,
    v1: tokio::sync::oneshot::Receiver<(u64, Option<Vec<u8>>)>,
    v2: tokio::sync::oneshot::Receiver<Option<Vec<[u8; 32]>>>,
}

impl PieceWorkers {
    pub(crate) fn start(piece_length: u64) -> Result<Self> {
        let (v1_tx, mut v1_rx) = mpsc::channel::<Bytes>(DEPTH);
        let (v2_tx, mut v2_rx) = mpsc::channel::<Bytes>(DEPTH);
        let v1 = spawn_low_priority("piece-sha1", move || {
            let mut h = PieceHasher::new(piece_length, true, false);
            while let Some(buf) = v1_rx.blocking_recv() {
                h.update(&buf);
            }
            (h.length(), h.finish_raw().0)
        })?;
        let v2 = spawn_low_priority("piece-sha256", move || {
            let mut h = PieceHasher::new(piece_length, false, true);
            while let Some(buf) = v2_rx.blocking_recv() {
                h.update(&buf);
            }
            h.finish_raw().1
        })?;
        Ok(Self {
            piece_length,
            v1_tx,
            v2_tx,
            v1,
            v2,
        })
    }

    /// False if a hashing thread stopped (`finish` then reports it).
    pub(crate) async fn send(&self, buf: &Bytes) -> bool {
        self.v1_tx.send(buf.clone()).await.is_ok() && self.v2_tx.send(buf.clone()).await.is_ok()
    }

    pub(crate) async fn finish(self) -> Result<PieceHashes> {
        drop(self.v1_tx);
        drop(self.v2_tx);
        let stopped = |_| StoreError::Io(std::io::Error::other("a piece hashing thread stopped"));
        let (length, v1_pieces) = self.v1.await.map_err(stopped)?;
        let leaves = self.v2.await.map_err(stopped)?;
        // Each byte goes through SHA-1 (v1 pieces) and SHA-256 (v2 leaves).
        metrics::counter!("seedbucket_piece_hashed_bytes_total").increment(length);
        Ok(PieceHashes::assemble(
            length,
            self.piece_length,
            v1_pieces,
            leaves.as_deref(),
        ))
    }
}

/// Where a body that is not kept in memory goes.
pub(crate) enum Destination<'a> {
    /// A temporary file in the data dir (embedded mode).
    Dir(&'a BlobDir),
    /// The backend (gateway mode): the function starts the backend request and returns the
    /// channel that feeds its body, called once the body turns out larger than `inline_max`.
    Remote(Box<dyn FnOnce() -> crate::gateway::RemoteBody + Send + 'a>),
}

/// The writer of a body that goes out of memory.
enum Writer {
    File {
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        path: PathBuf,
        guard: TmpGuard,
    },
    Remote(crate::gateway::PendingUpload),
}

/// The workers of a body that goes to a file or to the backend.
struct FileSink {
    write_tx: mpsc::Sender<Bytes>,
    hash_tx: mpsc::Sender<Bytes>,
    pieces: Option<PieceWorkers>,
    writer: Writer,
    hasher: tokio::task::JoinHandle<Digests>,
}

impl FileSink {
    fn start_remote(
        body: crate::gateway::RemoteBody,
        checksums: ChecksumSelection,
        pieces: Option<u64>,
    ) -> Result<Self> {
        let (hash_tx, hasher) = start_hasher(checksums);
        let pieces = pieces.map(PieceWorkers::start).transpose()?;
        Ok(Self {
            write_tx: body.sender,
            hash_tx,
            pieces,
            writer: Writer::Remote(body.upload),
            hasher,
        })
    }

    fn start(path: PathBuf, checksums: ChecksumSelection, pieces: Option<u64>) -> Result<Self> {
        let mut file = BodyFile::create(&path)?;
        let guard = TmpGuard(Some(path.clone()));
        let (write_tx, mut write_rx) = mpsc::channel::<Bytes>(DEPTH);
        let task = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut unsynced = 0usize;
            while let Some(buf) = write_rx.blocking_recv() {
                file.append(&buf)?;
                unsynced += buf.len();
                // Write back as we go, so the final fsync has little left to wait for.
                if unsynced >= SYNC_EVERY {
                    file.sync_data()?;
                    unsynced = 0;
                }
            }
            file.sync_all()
        });
        let (hash_tx, hasher) = start_hasher(checksums);
        let pieces = pieces.map(PieceWorkers::start).transpose()?;
        Ok(Self {
            write_tx,
            hash_tx,
            pieces,
            writer: Writer::File { task, path, guard },
            hasher,
        })
    }

    /// False if a worker died (its error is reported by `finish`).
    async fn send(&self, buf: Bytes) -> bool {
        if let Some(p) = &self.pieces
            && !p.send(&buf).await
        {
            return false;
        }
        self.write_tx.send(buf.clone()).await.is_ok() && self.hash_tx.send(buf).await.is_ok()
    }

    /// Waits for the workers; returns where the body is, its digests and its piece hashes.
    async fn finish(self) -> Result<(StagedBody, Digests, Option<PieceHashes>)> {
        drop(self.write_tx);
        drop(self.hash_tx);
        let body = match self.writer {
            Writer::File {
                task,
                path,
                mut guard,
            } => {
                task.await??;
                guard.0 = None;
                StagedBody::File(StagedFile { path, armed: true })
            }
            // A backend that failed early (no such bucket, unreachable) says why here.
            Writer::Remote(upload) => StagedBody::Remote(upload.check_early_failure().await?),
        };
        let digests = self.hasher.await?;
        let pieces = match self.pieces {
            Some(p) => Some(p.finish().await?),
            None => None,
        };
        Ok((body, digests, pieces))
    }
}

/// The S3 digests (MD5 and the selected checksums) on a blocking thread.
fn start_hasher(
    checksums: ChecksumSelection,
) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<Digests>) {
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(DEPTH);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = BodyHasher::new(checksums);
        while let Some(buf) = hash_rx.blocking_recv() {
            hasher.update(&buf);
        }
        hasher.finish()
    });
    (hash_tx, hasher)
}

/// Receives `body`, hashing as it goes. A body of at most `inline_max` bytes is kept in memory;
/// a larger one goes to a new temporary file. Fails with `EntityTooLarge` past `max_size` bytes
/// and `IncompleteBody` if `expected_size` is given and not met exactly.
pub async fn stage<S, E>(
    blobs: &BlobDir,
    body: S,
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
    stage_to(
        Destination::Dir(blobs),
        body,
        expected_size,
        max_size,
        inline_max,
        checksums,
        hash_pieces,
    )
    .await
}

/// [`stage`] to either destination.
pub(crate) async fn stage_to<S, E>(
    dest: Destination<'_>,
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
    let id = crate::blob::BlobDir::new_id();
    // Piece boundaries depend on the total size, so pieces are hashed on the way in only when
    // the size is declared; other bodies are hashed on their first ?torrent.
    let piece_length = expected_size.filter(|_| hash_pieces).map(piece_length_for);
    // A buffer never reserves more than the rest of a declared body, so small PUTs stay small.
    let chunk_limit = |received: u64| {
        expected_size.map_or(CHUNK, |n| {
            usize::try_from(n.saturating_sub(received)).unwrap_or(CHUNK)
        })
    };
    // The body goes to a file (or the backend) once more than `inline_max` bytes have arrived.
    let mut dest = Some(dest);
    let mut start_file_past_inline = |sink: &mut Option<FileSink>, received: usize| -> Result<()> {
        if sink.is_none() && received > inline_max {
            *sink = Some(match dest.take() {
                Some(Destination::Dir(blobs)) => {
                    FileSink::start(blobs.tmp_path(&id), checksums, piece_length)?
                }
                Some(Destination::Remote(open)) => {
                    FileSink::start_remote(open(), checksums, piece_length)?
                }
                None => return Err(StoreError::Corrupt("body sink started twice".into())),
            });
        }
        Ok(())
    };
    let mut sink: Option<FileSink> = None;
    let mut size: u64 = 0;
    let mut handed_over: u64 = 0;
    let mut pending = AlignedChunk::new(chunk_limit(0));
    let mut failure: Option<StoreError> = None;
    'body: loop {
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
                let mut rest: &[u8] = chunk;
                while !rest.is_empty() {
                    let took = pending.fill(rest);
                    if took == 0 {
                        // Only a buffer sized for the end of a declared body takes nothing, and
                        // the size checks above stop longer bodies first; never spin on it.
                        failure = Some(StoreError::IncompleteBody);
                        break 'body;
                    }
                    rest = &rest[took..];
                    if !pending.is_full() {
                        continue;
                    }
                    start_file_past_inline(&mut sink, pending.len())?;
                    let Some(s) = &sink else {
                        // A full buffer that may stay inline is the whole declared body.
                        if !rest.is_empty() {
                            failure = Some(StoreError::IncompleteBody);
                            break 'body;
                        }
                        break;
                    };
                    handed_over += pending.len() as u64;
                    let full = std::mem::replace(
                        &mut pending,
                        AlignedChunk::new(chunk_limit(handed_over)),
                    );
                    if !s.send(full.freeze()).await {
                        break 'body;
                    }
                }
            }
            Some(Err(e)) => {
                failure = Some(StoreError::Body(e.to_string()));
                break;
            }
            None => {
                start_file_past_inline(&mut sink, pending.len())?;
                if let Some(s) = &sink
                    && !pending.is_empty()
                {
                    let last = std::mem::replace(&mut pending, AlignedChunk::new(0));
                    s.send(last.freeze()).await;
                }
                break;
            }
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
            let (body, digests, pieces) = result?;
            Ok(Staged {
                id,
                body,
                size,
                digests,
                pieces,
                sse: None,
                plain_size: size,
            })
        }
        None => {
            let data = Bytes::copy_from_slice(pending.as_slice());
            let mut hasher = BodyHasher::new(checksums);
            hasher.update(&data);
            let pieces = piece_length.map(|pl| {
                let mut h = PieceHasher::new(pl, true, true);
                h.update(&data);
                metrics::counter!("seedbucket_piece_hashed_bytes_total")
                    .increment(data.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest as _, Md5};

    fn body(data: &[u8], step: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let chunks: Vec<Result<Bytes, String>> = data
            .chunks(step.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    async fn staged(
        blobs: &BlobDir,
        data: &[u8],
        step: usize,
        expected: Option<u64>,
    ) -> Result<Staged> {
        stage(
            blobs,
            body(data, step),
            expected,
            1 << 40,
            crate::INLINE_MAX,
            ChecksumSelection::default(),
            true,
        )
        .await
    }

    #[tokio::test]
    async fn bodies_are_written_whole_and_hashed_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(3 * CHUNK + 12_345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for (len, step) in [
            (0, 1),
            (1000, 7),
            (crate::INLINE_MAX + 1, 4096),
            (CHUNK, 65_536),
            (CHUNK + 1, 1 << 20),
            (data.len(), 100_003),
            (data.len(), 3 * CHUNK),
        ] {
            let data = &data[..len];
            let s = staged(&blobs, data, step, Some(len as u64)).await.unwrap();
            let stored = match &s.body {
                StagedBody::Inline(b) => b.to_vec(),
                StagedBody::File(f) => std::fs::read(&f.path).unwrap(),
                StagedBody::Remote(_) => panic!("no backend in this test"),
            };
            assert_eq!(stored, data, "len {len} step {step}");
            assert_eq!(
                matches!(s.body, StagedBody::Inline(_)),
                len <= crate::INLINE_MAX
            );
            assert_eq!(s.digests.md5, Some(<[u8; 16]>::from(Md5::digest(data))));
            let mut whole = PieceHasher::new(piece_length_for(len as u64), true, true);
            whole.update(data);
            assert_eq!(s.pieces, Some(whole.finish()), "len {len} step {step}");
            // Without a declared size there are no piece hashes, and the bytes are the same.
            let s = staged(&blobs, data, step, None).await.unwrap();
            assert_eq!((s.size, s.pieces.is_none()), (len as u64, true));
        }
    }

    #[tokio::test]
    async fn wrong_sizes_are_refused_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path()).unwrap();
        let data = vec![7u8; 2 * CHUNK + 5];
        for expected in [2 * CHUNK as u64 + 4, 2 * CHUNK as u64 + 6, 10] {
            let err = staged(&blobs, &data, 300_000, Some(expected)).await;
            assert!(matches!(err, Err(StoreError::IncompleteBody)), "{expected}");
        }
        let err = stage(
            &blobs,
            body(&data, 300_000),
            None,
            CHUNK as u64,
            crate::INLINE_MAX,
            ChecksumSelection::default(),
            true,
        )
        .await;
        assert!(matches!(err, Err(StoreError::EntityTooLarge)));
        let tmp = blobs.tmp_path("x");
        let left: Vec<_> = std::fs::read_dir(tmp.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}
