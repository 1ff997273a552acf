//! Blob files on local disk.
//!
//! Layout under the data dir: `tmp/<id>` while a body is being written, `blobs/<2 hex>/<id>`
//! once it is complete and fsynced. Blob ids are random UUIDs: object keys never become paths.
//! A blob becomes visible only through a metadata commit that names it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Size of the buffers handed to the socket when streaming a blob.
const READ_BUF: usize = 256 * 1024;

/// The blob directory tree.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Creates the directories if needed and empties `tmp/` (leftovers of interrupted writes).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.to_path_buf();
        let tmp = root.join("tmp");
        if tmp.exists() {
            let mut removed = 0usize;
            for entry in fs::read_dir(&tmp)? {
                let entry = entry?;
                fs::remove_file(entry.path())?;
                removed += 1;
            }
            if removed > 0 {
                tracing::info!(removed, "removed temporary files of interrupted uploads");
            }
        }
        fs::create_dir_all(&tmp)?;
        for i in 0..=255u8 {
            fs::create_dir_all(root.join("blobs").join(format!("{i:02x}")))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    pub fn tmp_path(&self, id: &str) -> PathBuf {
        self.root.join("tmp").join(id)
    }

    fn shard_dir(&self, id: &str) -> PathBuf {
        let shard = id.get(..2).unwrap_or("00");
        self.root.join("blobs").join(shard)
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.shard_dir(id).join(id)
    }

    /// Moves a finished temporary file into place and makes the rename durable.
    pub fn publish(&self, id: &str) -> io::Result<()> {
        let dir = self.shard_dir(id);
        fs::rename(self.tmp_path(id), dir.join(id))?;
        File::open(&dir)?.sync_all()
    }

    /// Removes a published blob; a missing file is not an error.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Blob ids on disk whose files are older than `before`, for the orphan sweep.
    pub fn list_older_than(&self, before: SystemTime) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(self.root.join("blobs"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                if modified < before
                    && let Some(name) = entry.file_name().to_str()
                {
                    out.push(name.to_owned());
                }
            }
        }
        Ok(out)
    }
}

/// A piece of a read: `len` bytes of blob `blob` from `offset`.
#[derive(Debug, Clone)]
pub struct ReadSpan {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// Streams the spans in order through a bounded channel, reading on a blocking thread.
/// Memory per stream is bounded by the channel depth times the buffer size.
/// `hold` is kept alive until the stream ends (the blobs' pins).
pub fn stream_spans<H: Send + 'static>(
    spans: Vec<ReadSpan>,
    hold: H,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let _hold = hold;
        for span in spans {
            if let Err(e) = read_span(&span, &tx) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

fn read_span(span: &ReadSpan, tx: &mpsc::Sender<io::Result<Bytes>>) -> io::Result<()> {
    if span.len == 0 {
        return Ok(());
    }
    let mut file = File::open(&span.path)?;
    file.seek(SeekFrom::Start(span.offset))?;
    let mut left = span.len;
    while left > 0 {
        let want = usize::try_from(left.min(READ_BUF as u64)).unwrap_or(READ_BUF);
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob file shorter than its metadata",
                ));
            }
            filled += n;
        }
        left -= want as u64;
        if tx.blocking_send(Ok(buf.freeze())).is_err() {
            return Ok(()); // the client went away
        }
    }
    Ok(())
}
