//! [`ObjectReader`]: one open object version, whichever backend holds its bytes.
//!
//! Embedded: the version's blob files, pinned against removal while the reader lives.
//! Gateway: ranged GETs to the backend carrying `If-Match` with the version's ETag, so a changed
//! object fails the very next read instead of serving other bytes.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::blob::{self, BlobDir, ReadSpan};
use crate::gateway::RemoteSource;
use crate::pins::PinGuard;
use crate::records::ObjectRecord;
use crate::server_keys::ServerKeys;

/// An open object version: its record, and a way to read its bytes.
pub struct ObjectReader {
    pub record: ObjectRecord,
    source: Source,
    /// SSE-S3 master keys (embedded mode): objects encrypted with them read as plaintext.
    server_keys: Option<Arc<ServerKeys>>,
}

enum Source {
    Local(LocalSource),
    Remote(RemoteSource),
}

struct LocalSource {
    blobs: BlobDir,
    inline: Option<Bytes>,
    pins: PinGuard,
    /// The segments' files, opened on the first random read.
    files: OnceLock<Vec<std::fs::File>>,
}

fn past_the_end() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "read past the end")
}

impl ObjectReader {
    pub(crate) fn local(
        record: ObjectRecord,
        blobs: BlobDir,
        inline: Option<Bytes>,
        pins: PinGuard,
        server_keys: Arc<ServerKeys>,
    ) -> Self {
        Self {
            record,
            source: Source::Local(LocalSource {
                blobs,
                inline,
                pins,
                files: OnceLock::new(),
            }),
            server_keys: Some(server_keys),
        }
    }

    pub(crate) fn remote(record: ObjectRecord, source: RemoteSource) -> Self {
        Self {
            record,
            source: Source::Remote(source),
            server_keys: None,
        }
    }

    /// The master keys, if this object is encrypted with them (SSE-S3 at rest).
    fn sse_s3_keys(&self) -> Option<Arc<ServerKeys>> {
        self.server_keys
            .clone()
            .filter(|_| self.record.is_sse_s3_at_rest())
    }

    /// Gateway mode: where the bytes are in the backend.
    pub(crate) fn remote_source(&self) -> Option<&RemoteSource> {
        match &self.source {
            Source::Remote(r) => Some(r),
            Source::Local(_) => None,
        }
    }

    /// Reads `len` bytes at `offset`: random access for the seeder, which keeps one reader per
    /// served version. Embedded: a positioned read on a blocking thread. Gateway: through the
    /// node's piece cache, so many peers asking for one piece make one backend read.
    pub async fn read(self: Arc<Self>, offset: u64, len: usize) -> std::io::Result<Bytes> {
        if let Some(keys) = self.sse_s3_keys() {
            return self.read_decrypted(&keys, offset, len).await;
        }
        self.read_stored(offset, len).await
    }

    /// Reads `len` stored bytes at `offset` (ciphertext, if encrypted).
    pub(crate) async fn read_stored(
        self: Arc<Self>,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Bytes> {
        match &self.source {
            Source::Remote(r) => r.read(offset, len).await,
            Source::Local(_) => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.read_local(offset, len))
                    .await
                    .map_err(std::io::Error::other)?
            }
        }
    }

    fn read_local(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt as _;
        let Source::Local(local) = &self.source else {
            return Err(std::io::Error::other("not a local object"));
        };
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.record.segments.iter().map(|s| s.len).sum::<u64>())
            .ok_or_else(past_the_end)?;
        if let Some(data) = &local.inline {
            let lo = usize::try_from(offset).map_err(std::io::Error::other)?;
            return Ok(data.slice(lo..lo + len));
        }
        let files = match local.files.get() {
            Some(f) => f,
            None => {
                let opened = self
                    .record
                    .segments
                    .iter()
                    .map(|seg| std::fs::File::open(local.blobs.path(&seg.blob)))
                    .collect::<std::io::Result<Vec<_>>>()?;
                local.files.get_or_init(|| opened)
            }
        };
        let mut out = vec![0u8; len];
        let mut filled = 0usize;
        let mut seg_start = 0u64;
        for (seg, file) in self.record.segments.iter().zip(files) {
            let seg_end = seg_start + seg.len;
            let lo = offset.max(seg_start);
            let hi = end.min(seg_end);
            if lo < hi {
                let n = usize::try_from(hi - lo).map_err(std::io::Error::other)?;
                file.read_exact_at(&mut out[filled..filled + n], lo - seg_start)?;
                filled += n;
            }
            seg_start = seg_end;
        }
        Ok(Bytes::from(out))
    }

    /// Streams bytes `[start, end)` of the object's plaintext (an SSE-S3 object decrypted with
    /// the server's key). The caller validates the range. Embedded: the pins travel with the
    /// stream, so the blobs stay until the last byte is read.
    pub fn stream(self, start: u64, end: u64) -> mpsc::Receiver<std::io::Result<Bytes>> {
        match self.sse_s3_keys() {
            Some(keys) => self.decrypted_with_server_keys(&keys, start, end),
            None => self.stored_stream(start, end),
        }
    }

    /// Streams stored bytes `[start, end)` as they are on disk (ciphertext, if encrypted).
    pub(crate) fn stored_stream(
        self,
        start: u64,
        end: u64,
    ) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let local = match self.source {
            Source::Remote(r) => return r.stream(start, end),
            Source::Local(l) => l,
        };
        if let Some(data) = &local.inline {
            let (tx, rx) = mpsc::channel(1);
            let lo = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
            let hi = usize::try_from(end)
                .unwrap_or(usize::MAX)
                .min(data.len())
                .max(lo);
            if hi > lo {
                let _ = tx.try_send(Ok(data.slice(lo..hi)));
            }
            return rx;
        }
        let mut spans = Vec::new();
        let mut seg_start = 0u64;
        for seg in &self.record.segments {
            let seg_end = seg_start + seg.len;
            let lo = start.max(seg_start);
            let hi = end.min(seg_end);
            if lo < hi {
                spans.push(ReadSpan {
                    path: local.blobs.path(&seg.blob),
                    offset: lo - seg_start,
                    len: hi - lo,
                });
            }
            seg_start = seg_end;
        }
        blob::stream_spans(spans, local.pins)
    }

    /// Like [`ObjectReader::stream`], for BitTorrent readers (the webseed): in gateway mode the
    /// bytes come through the piece cache that the seeder shares.
    pub fn stream_for_torrent(
        self,
        start: u64,
        end: u64,
    ) -> mpsc::Receiver<std::io::Result<Bytes>> {
        match self.source {
            Source::Remote(r) => r.stream_cached(start, end),
            Source::Local(_) => self.stream(start, end),
        }
    }
}
