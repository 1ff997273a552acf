//! The digests computed over a body while it is written: MD5 (the ETag; a gateway leaves it
//! to its backend where it may), and the S3 additional checksums the request asks for. Later the BitTorrent piece hashers join here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crc_fast::CrcAlgorithm;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::records::Checksums;

/// Which S3 checksums to compute besides MD5, and whether MD5 may be left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSelection {
    pub crc32: bool,
    pub crc32c: bool,
    pub sha1: bool,
    pub sha256: bool,
    pub crc64nvme: bool,
    /// The request carries Content-MD5: the MD5 must be computed to check it.
    pub content_md5: bool,
    /// No MD5 (set by the store, never with `content_md5`): in gateway mode the ETag of a part,
    /// or of a large object, is the backend's, which computes the MD5 itself.
    pub skip_md5: bool,
}

impl ChecksumSelection {
    /// The same selection with MD5 computed whatever was asked (the embedded store's ETag).
    pub fn with_md5(self) -> Self {
        Self {
            skip_md5: false,
            ..self
        }
    }

    /// Turns on the algorithm named as S3 names it (`CRC32`, `crc32c`, `SHA256`, ...).
    /// Returns false for a name it does not know.
    pub fn enable(&mut self, name: &str) -> bool {
        match name.to_ascii_uppercase().as_str() {
            "CRC32" => self.crc32 = true,
            "CRC32C" => self.crc32c = true,
            "SHA1" => self.sha1 = true,
            "SHA256" => self.sha256 = true,
            "CRC64NVME" => self.crc64nvme = true,
            _ => return false,
        }
        true
    }
}

/// The raw results of [`BodyHasher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// `None` when the selection skipped it.
    pub md5: Option<[u8; 16]>,
    pub crc32: Option<[u8; 4]>,
    pub crc32c: Option<[u8; 4]>,
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
    pub crc64nvme: Option<[u8; 8]>,
}

impl Digests {
    /// Hex MD5, the ETag of a single-part object (`None` when skipped).
    pub fn md5_hex(&self) -> Option<String> {
        self.md5.map(hex::encode)
    }

    /// The S3 checksums, base64 as they appear in headers.
    pub fn checksums(&self) -> Checksums {
        Checksums {
            crc32: self.crc32.map(|v| B64.encode(v)),
            crc32c: self.crc32c.map(|v| B64.encode(v)),
            sha1: self.sha1.map(|v| B64.encode(v)),
            sha256: self.sha256.map(|v| B64.encode(v)),
            crc64nvme: self.crc64nvme.map(|v| B64.encode(v)),
        }
    }
}

/// Incremental hasher for one body.
pub struct BodyHasher {
    md5: Option<Md5>,
    crc32: Option<crc_fast::Digest>,
    crc32c: Option<crc_fast::Digest>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    crc64nvme: Option<crc_fast::Digest>,
}

impl BodyHasher {
    pub fn new(sel: ChecksumSelection) -> Self {
        Self {
            md5: (!sel.skip_md5 || sel.content_md5).then(Md5::new),
            crc32: sel
                .crc32
                .then(|| crc_fast::Digest::new(CrcAlgorithm::Crc32IsoHdlc)),
            crc32c: sel
                .crc32c
                .then(|| crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi)),
            sha1: sel.sha1.then(Sha1::new),
            sha256: sel.sha256.then(Sha256::new),
            crc64nvme: sel
                .crc64nvme
                .then(|| crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme)),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc32c {
            h.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc64nvme {
            h.update(data);
        }
    }

    pub fn finish(self) -> Digests {
        let crc32_bytes = |d: crc_fast::Digest| {
            // 32-bit CRCs come back in the low half of the u64.
            let v = u32::try_from(d.finalize() & 0xffff_ffff).unwrap_or_default();
            v.to_be_bytes()
        };
        Digests {
            md5: self.md5.map(|h| h.finalize().into()),
            crc32: self.crc32.map(crc32_bytes),
            crc32c: self.crc32c.map(crc32_bytes),
            sha1: self.sha1.map(|h| h.finalize().into()),
            sha256: self.sha256.map(|h| h.finalize().into()),
            crc64nvme: self.crc64nvme.map(|d| d.finalize().to_be_bytes()),
        }
    }
}

/// Composite checksum of a multipart object: the hash of the concatenated raw part checksums,
/// base64, with `-N`. `None` unless every part has the checksum.
pub fn composite_checksums(parts: &[&Checksums]) -> Checksums {
    fn composite(
        parts: &[&Checksums],
        pick: impl Fn(&Checksums) -> Option<&String>,
        hash: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Option<String> {
        let mut raw = Vec::new();
        for p in parts {
            raw.extend(B64.decode(pick(p)?).ok()?);
        }
        Some(format!("{}-{}", B64.encode(hash(&raw)), parts.len()))
    }
    let crc = |alg: CrcAlgorithm| {
        move |data: &[u8]| {
            let v = crc_fast::checksum(alg, data) & 0xffff_ffff;
            u32::try_from(v).unwrap_or_default().to_be_bytes().to_vec()
        }
    };
    if parts.is_empty() {
        return Checksums::default();
    }
    Checksums {
        crc32: composite(parts, |c| c.crc32.as_ref(), crc(CrcAlgorithm::Crc32IsoHdlc)),
        crc32c: composite(parts, |c| c.crc32c.as_ref(), crc(CrcAlgorithm::Crc32Iscsi)),
        sha1: composite(parts, |c| c.sha1.as_ref(), |d| Sha1::digest(d).to_vec()),
        sha256: composite(parts, |c| c.sha256.as_ref(), |d| Sha256::digest(d).to_vec()),
        crc64nvme: None,
    }
}

/// The multipart ETag: MD5 of the concatenated binary part MD5s, hex, `-N`.
pub fn multipart_etag(part_md5_hex: &[&str]) -> Option<String> {
    let mut md5 = Md5::new();
    for p in part_md5_hex {
        md5.update(hex::decode(p).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5.finalize()),
        part_md5_hex.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_skipped_only_without_content_md5() {
        let digest = |skip_md5, content_md5| {
            let mut h = BodyHasher::new(ChecksumSelection {
                skip_md5,
                content_md5,
                ..ChecksumSelection::default()
            });
            h.update(b"hello world");
            h.finish().md5_hex()
        };
        let md5 = Some("5eb63bbbe01eeed093cb22bb8f5acdc3".to_owned());
        assert_eq!(digest(false, false), md5);
        assert_eq!(digest(true, false), None);
        assert_eq!(digest(true, true), md5);
        let skipping = ChecksumSelection {
            skip_md5: true,
            ..ChecksumSelection::default()
        };
        assert!(!skipping.with_md5().skip_md5);
    }

    #[test]
    fn known_vectors() {
        let mut sel = ChecksumSelection::default();
        for n in ["crc32", "CRC32C", "sha1", "SHA256", "crc64nvme"] {
            assert!(sel.enable(n));
        }
        assert!(!sel.enable("md4"));
        let mut h = BodyHasher::new(sel);
        h.update(b"hello ");
        h.update(b"world");
        let d = h.finish();
        assert_eq!(
            d.md5_hex().as_deref(),
            Some("5eb63bbbe01eeed093cb22bb8f5acdc3")
        );
        let c = d.checksums();
        // crc32("hello world") = 0x0d4a1185
        assert_eq!(c.crc32.as_deref(), Some("DUoRhQ=="));
        // crc32c("hello world") = 0xc99465aa
        assert_eq!(c.crc32c.as_deref(), Some("yZRlqg=="));
        assert_eq!(c.sha1.as_deref(), Some("Kq5sNclPz7QV2+lfQIuc6R7oRu0="));
    }

    #[test]
    fn multipart_etag_shape() {
        let e = multipart_etag(&[
            "5eb63bbbe01eeed093cb22bb8f5acdc3",
            "5eb63bbbe01eeed093cb22bb8f5acdc3",
        ]);
        assert!(e.is_some_and(|e| e.ends_with("-2") && e.len() == 34));
        assert_eq!(multipart_etag(&["zz"]), None);
    }
}
