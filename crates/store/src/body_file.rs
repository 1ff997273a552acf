//! The file a staged body is written to, and the buffers the body is cut into.
//!
//! A large PUT is written once and fsynced anyway, so copying it through the page cache only
//! costs CPU: on two cores the kernel's copy into the cache took about a fifth of the server's
//! time, as much as the torrent hashes. Where the filesystem allows it the body therefore goes
//! to disk with `O_DIRECT`, straight from the buffers the hashers read. Direct IO wants the
//! memory, the file offset and the length aligned; [`AlignedChunk`] makes buffers that start on
//! an aligned address and are cut at exact [`CHUNK`] sizes, and whatever does not fit (the last
//! partial block of a body, a filesystem that refuses `O_DIRECT`) is written through the page
//! cache on a second descriptor of the same file, so every body is written in full either way.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;

/// Size of the buffers a large body is cut into.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Alignment of direct IO: memory, offsets and lengths are multiples of it. 4 KiB covers
/// devices with 512-byte and 4 KiB logical blocks.
const DIRECT_ALIGN: usize = 4096;

/// A buffer of at most `limit` (≤ [`CHUNK`]) bytes whose first byte sits on a
/// [`DIRECT_ALIGN`] boundary, frozen into a [`Bytes`] without moving.
pub(crate) struct AlignedChunk {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

impl AlignedChunk {
    /// `limit` is the most the chunk will hold: [`CHUNK`], or less when the whole body is known
    /// to be smaller.
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.min(CHUNK);
        let mut buf: Vec<u8> = Vec::with_capacity(limit + DIRECT_ALIGN);
        // Pad the front up to the boundary; the capacity never grows, so the data stays put.
        let start = match buf.as_ptr().align_offset(DIRECT_ALIGN) {
            n if n < DIRECT_ALIGN => n,
            _ => 0,
        };
        buf.resize(start, 0);
        Self { buf, start, limit }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == self.limit
    }

    /// Appends as much of `data` as fits and returns how many bytes it took.
    pub(crate) fn fill(&mut self, data: &[u8]) -> usize {
        let take = (self.limit - self.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        take
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The bytes, still at their aligned address (a `Vec` becomes `Bytes` without a copy).
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from(self.buf).slice(self.start..)
    }
}

/// A new file written front to back: aligned runs with `O_DIRECT` when possible, the rest
/// through the page cache.
pub(crate) struct BodyFile {
    buffered: File,
    direct: Option<File>,
    offset: u64,
}

impl BodyFile {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let buffered = File::create_new(path)?;
        // Filesystems without direct IO (tmpfs on older kernels, some network filesystems)
        // refuse the flag here, or later with EINVAL; either way the page cache takes over.
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        Ok(Self {
            buffered,
            direct,
            offset: 0,
        })
    }

    /// Appends `data`.
    pub(crate) fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let aligned_len = if (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
            && self.offset.is_multiple_of(DIRECT_ALIGN as u64)
        {
            data.len() - data.len() % DIRECT_ALIGN
        } else {
            0
        };
        let mut done = 0;
        if aligned_len > 0
            && let Some(direct) = &self.direct
        {
            match direct.write_all_at(&data[..aligned_len], self.offset) {
                Ok(()) => done = aligned_len,
                // Refused by the filesystem: write this and everything after through the cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        self.buffered
            .write_all_at(&data[done..], self.offset + done as u64)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Flushes the data written so far to stable storage (the descriptors share one inode).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.buffered.sync_data()
    }

    pub(crate) fn sync_all(&self) -> io::Result<()> {
        self.buffered.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_aligned_and_bounded() {
        let mut c = AlignedChunk::new(10_000);
        assert!(c.is_empty());
        assert_eq!(c.fill(&[1; 6000]), 6000);
        assert_eq!(c.fill(&[2; 6000]), 4000);
        assert!(c.is_full());
        let b = c.freeze();
        assert_eq!(b.len(), 10_000);
        assert_eq!(b.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(&b[5999..6001], &[1, 2]);
        assert_eq!(AlignedChunk::new(usize::MAX).limit, CHUNK);
    }

    #[test]
    fn writes_every_byte_whatever_the_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let mut f = BodyFile::create(&path).unwrap();
        let mut expect = Vec::new();
        // An aligned full chunk, an aligned chunk with a tail, then unaligned pieces.
        for (len, byte) in [
            (CHUNK, 1u8),
            (3 * DIRECT_ALIGN + 100, 2),
            (77, 3),
            (CHUNK, 4),
        ] {
            let mut c = AlignedChunk::new(len);
            c.fill(&vec![byte; len]);
            expect.extend_from_slice(c.as_slice());
            f.append(&c.freeze()).unwrap();
        }
        let unaligned = vec![5u8; 2 * DIRECT_ALIGN + 1];
        f.append(&unaligned[1..]).unwrap();
        expect.extend_from_slice(&unaligned[1..]);
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expect);
        assert!(
            BodyFile::create(&path).is_err(),
            "an existing file is never reused"
        );
    }
}
