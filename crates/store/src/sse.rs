//! SSE-C: server-side encryption at rest with customer-provided keys.
//!
//! The client sends a 256-bit AES key with every request that touches the object's data
//! (`x-amz-server-side-encryption-customer-algorithm`, `-customer-key`, `-customer-key-MD5`).
//! The server encrypts with it, forgets it, and must recognise it again on GET/HEAD.
//!
//! # At-rest format (version 1)
//!
//! * Per object a random 16-byte `salt` is drawn. HKDF-SHA256 (salt = `salt`, input key =
//!   the customer key) yields two independent 32-byte values under distinct labels: the
//!   object's **data key** and its **key check**. Only the salt and the key check are stored
//!   ([`SseParams`]); the customer key and the data key never are.
//! * The plaintext is cut into [`CHUNK_SIZE`] (64 KiB) chunks; the last chunk may be short, and
//!   an empty object has one empty chunk. Chunk `i` is sealed with AES-256-GCM under the data key,
//!   nonce = 4 zero bytes ‖ `i` as u64 big-endian, and associated data = `i` as u64 big-endian ‖
//!   a final-chunk flag byte. A sealed chunk is the ciphertext followed by its 16-byte tag, and
//!   the stored blob is the sealed chunks back to back ([`ciphertext_len`]).
//! * Nonces never repeat: within one object the chunk index is unique, and every object (every
//!   write, even of the same bytes under the same customer key) has a fresh salt, so a fresh
//!   data key.
//! * Reordered, dropped, duplicated or appended chunks fail authentication (the index is in the
//!   nonce and the associated data; only the real last chunk carries the final flag).
//!
//! # Using it
//!
//! * Parse the request headers with [`CustomerKey::from_headers`].
//! * PUT: [`EncryptingWriter`] (over any [`Write`]) or the push-style [`Encryptor`] (for async
//!   body streams) turns plaintext into ciphertext and produces the [`SseParams`] to keep in
//!   the object's metadata.
//! * GET/HEAD: [`SseParams::verify`] tells a wrong key ([`SseError::KeyMismatch`], S3's 403
//!   AccessDenied) without touching the data. A whole object is read back through
//!   [`DecryptingReader`]; a byte range through [`ciphertext_range_for`] and [`RangeDecryptor`].

use std::fmt;
use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInOut, Nonce, Tag};
use aes_gcm::{Aes256Gcm, Key, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use md5::{Digest as _, Md5};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

/// The only algorithm S3 accepts in `x-amz-server-side-encryption-customer-algorithm`.
pub const ALGORITHM: &str = "AES256";
/// Length of a customer key in bytes (AES-256).
pub const KEY_SIZE: usize = 32;
/// Plaintext bytes per chunk: every chunk but the last holds exactly this many.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Bytes the AES-GCM tag adds to each chunk.
pub const TAG_SIZE: usize = 16;
/// Stored bytes of a full chunk: [`CHUNK_SIZE`] + [`TAG_SIZE`].
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;
/// Length of the per-object random salt.
pub const SALT_SIZE: usize = 16;
/// Length of the stored key check.
pub const KEY_CHECK_SIZE: usize = 32;
/// The at-rest format this module writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;

const CHUNK: u64 = CHUNK_SIZE as u64;
const SEALED: u64 = SEALED_CHUNK_SIZE as u64;
const TAG: u64 = TAG_SIZE as u64;

/// HKDF labels; distinct so the data key and the key check are independent.
const INFO_DATA_KEY: &[u8] = b"seedbucket sse-c v1 data key";
const INFO_KEY_CHECK: &[u8] = b"seedbucket sse-c v1 key check";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the SSE-C request headers were refused. The display text is S3's message; see
/// [`KeyError::s3_code`] for the error code (all are HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key or key MD5 came without the algorithm header.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
    )]
    MissingAlgorithm,
    /// The algorithm header is present but is not `AES256`.
    #[error("The encryption request that you specified is not valid. The valid value is AES256.")]
    UnsupportedAlgorithm,
    /// The key header is missing.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
    )]
    MissingKey,
    /// The key MD5 header is missing.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
    )]
    MissingKeyMd5,
    /// The key is not base64 of exactly 32 bytes.
    #[error("The secret key was invalid for the specified algorithm.")]
    InvalidKey,
    /// The key MD5 header does not match the MD5 of the key.
    #[error("The calculated MD5 hash of the key did not match the hash that was provided.")]
    KeyMd5Mismatch,
}

impl KeyError {
    /// The S3 error code to answer with (HTTP status 400 for all of them).
    pub fn s3_code(&self) -> &'static str {
        match self {
            KeyError::UnsupportedAlgorithm => "InvalidEncryptionAlgorithmError",
            KeyError::MissingAlgorithm
            | KeyError::MissingKey
            | KeyError::MissingKeyMd5
            | KeyError::InvalidKey
            | KeyError::KeyMd5Mismatch => "InvalidArgument",
        }
    }
}

/// Failures of encrypting or decrypting object data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// The customer key is not the one the object was written with (S3: 403 AccessDenied).
    #[error("the provided customer key does not match the key the object was encrypted with")]
    KeyMismatch,
    /// The stored parameters name a format this build cannot read.
    #[error("unsupported SSE-C format version {0}")]
    UnsupportedVersion(u8),
    /// A chunk failed authentication: the stored data was altered, reordered or cut.
    #[error("encrypted chunk {chunk} failed authentication: the stored object is damaged")]
    Tampered {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The ciphertext ended before the last expected chunk was complete.
    #[error("the encrypted object ended early")]
    Truncated,
    /// More ciphertext arrived than the requested chunks hold.
    #[error("the encrypted object has data past its expected end")]
    TrailingData,
    /// A plaintext range outside the object, or with its start after its end.
    #[error("invalid plaintext range {start}..{end} of an object of {total} bytes")]
    InvalidRange {
        /// Requested first byte.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// Plaintext size of the object.
        total: u64,
    },
    /// Key derivation or AES-GCM sealing refused its input (not expected: the sizes used
    /// are far below the algorithms' limits).
    #[error("SSE-C cipher failure")]
    Cipher,
}

impl SseError {
    /// The [`SseError`] inside an [`io::Error`] returned by [`DecryptingReader`] or
    /// [`EncryptingWriter`], if that is what it carries.
    pub fn from_io(err: &io::Error) -> Option<&SseError> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<SseError>())
    }
}

impl From<SseError> for io::Error {
    fn from(err: SseError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

// ---------------------------------------------------------------------------------------------
// Customer key
// ---------------------------------------------------------------------------------------------

/// A validated customer key. The bytes are wiped when it is dropped; `Debug` shows only the
/// key's MD5.
#[derive(Clone)]
pub struct CustomerKey {
    key: Zeroizing<[u8; KEY_SIZE]>,
    md5: [u8; 16],
}

impl CustomerKey {
    /// Validates the three SSE-C header values as S3 does. All three absent (or empty) means
    /// the request does not use SSE-C: `Ok(None)`. Works the same for the
    /// `x-amz-copy-source-server-side-encryption-customer-*` headers of a copy.
    pub fn from_headers(
        algorithm: Option<&str>,
        key: Option<&str>,
        key_md5: Option<&str>,
    ) -> Result<Option<Self>, KeyError> {
        fn present(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        let (algorithm, key, key_md5) = (present(algorithm), present(key), present(key_md5));
        if algorithm.is_none() && key.is_none() && key_md5.is_none() {
            return Ok(None);
        }
        let algorithm = algorithm.ok_or(KeyError::MissingAlgorithm)?;
        let key = key.ok_or(KeyError::MissingKey)?;
        let key_md5 = key_md5.ok_or(KeyError::MissingKeyMd5)?;
        Self::parse(algorithm, key, key_md5).map(Some)
    }

    /// Validates a complete set of header values: the algorithm must be `AES256`, the key base64
    /// of exactly 32 bytes, and `key_md5` the base64 MD5 of those 32 bytes.
    pub fn parse(algorithm: &str, key_b64: &str, key_md5_b64: &str) -> Result<Self, KeyError> {
        if algorithm.trim() != ALGORITHM {
            return Err(KeyError::UnsupportedAlgorithm);
        }
        let decoded = Zeroizing::new(
            B64.decode(key_b64.trim())
                .map_err(|_| KeyError::InvalidKey)?,
        );
        let bytes: [u8; KEY_SIZE] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::InvalidKey)?;
        let key = Self::from_bytes(bytes);
        let claimed = B64
            .decode(key_md5_b64.trim())
            .map_err(|_| KeyError::KeyMd5Mismatch)?;
        if claimed.len() != key.md5.len() || !bool::from(claimed.ct_eq(&key.md5)) {
            return Err(KeyError::KeyMd5Mismatch);
        }
        Ok(key)
    }

    /// Wraps raw key bytes (for callers that hold a key already, and for tests).
    pub fn from_bytes(mut bytes: [u8; KEY_SIZE]) -> Self {
        let key = Zeroizing::new(bytes);
        bytes.zeroize();
        let md5: [u8; 16] = Md5::digest(key.as_slice()).into();
        Self { key, md5 }
    }

    /// Base64 MD5 of the key: the value S3 echoes in
    /// `x-amz-server-side-encryption-customer-key-MD5` on responses.
    pub fn key_md5_base64(&self) -> String {
        B64.encode(self.md5)
    }

    /// The algorithm to echo in `x-amz-server-side-encryption-customer-algorithm`.
    pub fn algorithm(&self) -> &'static str {
        ALGORITHM
    }

    fn bytes(&self) -> &[u8] {
        self.key.as_slice()
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerKey")
            .field("key_md5", &self.key_md5_base64())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Stored parameters and key derivation
// ---------------------------------------------------------------------------------------------

/// What is stored with an SSE-C object (in its metadata) so the key can be recognised and the
/// data decrypted: never the key itself. Serialises with base64 byte fields, e.g.
/// `{"version":1,"salt":"…","key_check":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SseParams {
    /// At-rest format version ([`FORMAT_VERSION`]).
    pub version: u8,
    /// Random per-object salt: HKDF salt for the data key and the key check.
    #[serde(with = "b64_array")]
    pub salt: [u8; SALT_SIZE],
    /// HKDF-SHA256(salt, customer key, "…key check"): recognises the key, reveals nothing of it.
    #[serde(with = "b64_array")]
    pub key_check: [u8; KEY_CHECK_SIZE],
    /// SSE-S3: the id of the server's master key this was written with
    /// ([`crate::server_keys`]); `None` for SSE-C (the customer holds the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key: Option<String>,
}

impl SseParams {
    /// Fresh parameters for a new object (or part) written with `key`: a new random salt.
    pub fn generate(key: &CustomerKey) -> Result<Self, SseError> {
        let mut salt = [0u8; SALT_SIZE];
        rand::rng().fill(&mut salt);
        let derived = Derived::new(key, &salt)?;
        Ok(Self {
            version: FORMAT_VERSION,
            salt,
            key_check: derived.key_check,
            server_key: None,
        })
    }

    /// Checks that `key` is the key the object was written with, in constant time.
    /// Fails with [`SseError::KeyMismatch`] (S3: 403 AccessDenied) if it is not.
    pub fn verify(&self, key: &CustomerKey) -> Result<(), SseError> {
        self.cipher(key).map(|_| ())
    }

    /// Verifies the key and sets up the object's chunk cipher.
    fn cipher(&self, key: &CustomerKey) -> Result<ChunkCipher, SseError> {
        if self.version != FORMAT_VERSION {
            return Err(SseError::UnsupportedVersion(self.version));
        }
        let derived = Derived::new(key, &self.salt)?;
        if !bool::from(derived.key_check.ct_eq(&self.key_check)) {
            return Err(SseError::KeyMismatch);
        }
        Ok(derived.cipher)
    }
}

/// The values HKDF gives for one (customer key, salt) pair.
struct Derived {
    cipher: ChunkCipher,
    key_check: [u8; KEY_CHECK_SIZE],
}

impl Derived {
    fn new(key: &CustomerKey, salt: &[u8; SALT_SIZE]) -> Result<Self, SseError> {
        let hkdf = Hkdf::<Sha256>::new(Some(salt), key.bytes());
        let mut data_key = Key::<Aes256Gcm>::default();
        let expanded = hkdf.expand(INFO_DATA_KEY, &mut data_key);
        let aead = Aes256Gcm::new(&data_key);
        data_key.as_mut_slice().zeroize();
        expanded.map_err(|_| SseError::Cipher)?;
        let mut key_check = [0u8; KEY_CHECK_SIZE];
        hkdf.expand(INFO_KEY_CHECK, &mut key_check)
            .map_err(|_| SseError::Cipher)?;
        Ok(Self {
            cipher: ChunkCipher { aead },
            key_check,
        })
    }
}

/// AES-256-GCM under an object's data key, sealing and opening single chunks.
struct ChunkCipher {
    aead: Aes256Gcm,
}

impl ChunkCipher {
    fn nonce(index: u64) -> Nonce<Aes256Gcm> {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::<Aes256Gcm>::from(n)
    }

    fn aad(index: u64, last: bool) -> [u8; 9] {
        let mut a = [0u8; 9];
        a[..8].copy_from_slice(&index.to_be_bytes());
        a[8] = u8::from(last);
        a
    }

    /// Encrypts `buf[from..]` in place and appends its tag.
    fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>, from: usize) -> Result<(), SseError> {
        let tag = self
            .aead
            .encrypt_inout_detached(
                &Self::nonce(index),
                &Self::aad(index, last),
                (&mut buf[from..]).into(),
            )
            .map_err(|_| SseError::Cipher)?;
        buf.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// Authenticates and decrypts a sealed chunk in place; returns its plaintext length (the
    /// plaintext is `sealed[..len]`).
    fn open(&self, index: u64, last: bool, sealed: &mut [u8]) -> Result<usize, SseError> {
        let len = sealed
            .len()
            .checked_sub(TAG_SIZE)
            .ok_or(SseError::Truncated)?;
        let (body, tag) = sealed.split_at_mut(len);
        let tag = Tag::<Aes256Gcm>::try_from(&*tag).map_err(|_| SseError::Truncated)?;
        self.aead
            .decrypt_inout_detached(
                &Self::nonce(index),
                &Self::aad(index, last),
                body.into(),
                &tag,
            )
            .map_err(|_| SseError::Tampered { chunk: index })?;
        Ok(len)
    }
}

// ---------------------------------------------------------------------------------------------
// Length and range arithmetic
// ---------------------------------------------------------------------------------------------

/// Number of chunks an object of `plaintext_len` bytes is stored in (at least one).
pub fn chunk_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(CHUNK).max(1)
}

/// Stored size of an object of `plaintext_len` bytes: 16 bytes more per started 64 KiB, and
/// 16 bytes for an empty object.
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    plaintext_len.saturating_add(chunk_count(plaintext_len).saturating_mul(TAG))
}

/// The inverse of [`ciphertext_len`]: the plaintext size of a stored blob of
/// `ciphertext_len` bytes, or `None` if no object encrypts to that size.
pub fn plaintext_len(ciphertext_len: u64) -> Option<u64> {
    let full = ciphertext_len / SEALED;
    let rest = ciphertext_len % SEALED;
    match (full, rest) {
        (0, r) if r >= TAG => Some(r - TAG),
        (0, _) => None,
        (f, 0) => Some(f * CHUNK),
        (f, r) if r > TAG => Some(f * CHUNK + (r - TAG)),
        _ => None,
    }
}

/// Stored length of chunk `index` of an object of `total` plaintext bytes.
fn sealed_len_of(index: u64, total: u64) -> u64 {
    let start = index.saturating_mul(CHUNK);
    let plain = total.saturating_sub(start).min(CHUNK);
    plain + TAG
}

/// The stored byte range `[start, end)` that holds the plaintext range `[start, end)` of an
/// object of `total` plaintext bytes: the whole sealed chunks that the range touches.
///
/// The range is clamped to the object. An empty range maps to the one chunk holding `start`
/// (the last chunk if `start == total`), so even `[0, 0)` of an empty object reads and
/// authenticates its single chunk. [`RangeDecryptor::ciphertext_range`] gives the same answer.
pub fn ciphertext_range_for(start: u64, end: u64, total: u64) -> (u64, u64) {
    let (first, last) = chunk_span(start, end, total);
    let ct_start = first.saturating_mul(SEALED);
    let ct_end = last
        .saturating_add(1)
        .saturating_mul(SEALED)
        .min(ciphertext_len(total));
    (ct_start, ct_end)
}

/// First and last chunk index covering the (clamped) plaintext range.
fn chunk_span(start: u64, end: u64, total: u64) -> (u64, u64) {
    let end = end.min(total);
    let start = start.min(end);
    let final_index = chunk_count(total) - 1;
    let first = (start / CHUNK).min(final_index);
    let last = if end > start {
        (end - 1) / CHUNK
    } else {
        first
    };
    (first, last)
}

// ---------------------------------------------------------------------------------------------
// Encryption
// ---------------------------------------------------------------------------------------------

/// Push-style encryption of one object: feed plaintext with [`Encryptor::update`], collect the
/// ciphertext it appends, and close with [`Encryptor::finish`]. Suits async body streams.
pub struct Encryptor {
    cipher: ChunkCipher,
    params: SseParams,
    /// Plaintext of the chunk being filled (at most [`CHUNK_SIZE`] bytes). A full chunk stays
    /// here until more data arrives: only then is it known not to be the last.
    pending: Vec<u8>,
    index: u64,
    plaintext_len: u64,
}

impl Encryptor {
    /// Starts a new object under `key`, with fresh [`SseParams`].
    pub fn new(key: &CustomerKey) -> Result<Self, SseError> {
        Self::with_params(key, SseParams::generate(key)?)
    }

    /// Encrypts under given parameters. Private: reusing parameters for a second object
    /// would repeat nonces under one data key.
    fn with_params(key: &CustomerKey, params: SseParams) -> Result<Self, SseError> {
        let cipher = params.cipher(key)?;
        Ok(Self {
            cipher,
            params,
            pending: Vec::with_capacity(CHUNK_SIZE),
            index: 0,
            plaintext_len: 0,
        })
    }

    /// The parameters to store with the object.
    pub fn params(&self) -> &SseParams {
        &self.params
    }

    /// Plaintext bytes taken so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Takes more plaintext; appends to `out` the ciphertext of every chunk now known to be
    /// complete and not the last (possibly nothing).
    pub fn update(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SseError> {
        self.plaintext_len = self.plaintext_len.saturating_add(plaintext.len() as u64);
        while !plaintext.is_empty() {
            if self.pending.len() == CHUNK_SIZE {
                self.seal_pending(false, out)?;
            }
            let take = (CHUNK_SIZE - self.pending.len()).min(plaintext.len());
            self.pending.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
        }
        Ok(())
    }

    /// Seals the last chunk (short, full, or empty for an empty object) into `out` and returns
    /// the parameters to store.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<SseParams, SseError> {
        self.seal_pending(true, out)?;
        Ok(self.params)
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), SseError> {
        let from = out.len();
        out.reserve(self.pending.len() + TAG_SIZE);
        out.extend_from_slice(&self.pending);
        self.cipher.seal(self.index, last, out, from)?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }
}

/// What [`EncryptingWriter::finish`] hands back.
#[derive(Debug)]
pub struct Finished<W> {
    /// The underlying writer, all ciphertext written to it (not flushed).
    pub inner: W,
    /// The parameters to store with the object.
    pub params: SseParams,
    /// Plaintext bytes written.
    pub plaintext_len: u64,
    /// Ciphertext bytes written: `ciphertext_len(plaintext_len)`.
    pub ciphertext_len: u64,
}

/// A [`Write`] adapter: takes plaintext, writes sealed chunks to the inner writer.
/// [`EncryptingWriter::finish`] must be called to seal the last chunk; without it the
/// ciphertext is incomplete and will not decrypt.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    encryptor: Encryptor,
    out: Vec<u8>,
    failed: bool,
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts encrypting a new object under `key` into `inner`.
    pub fn new(inner: W, key: &CustomerKey) -> Result<Self, SseError> {
        Ok(Self {
            inner,
            encryptor: Encryptor::new(key)?,
            out: Vec::with_capacity(SEALED_CHUNK_SIZE),
            failed: false,
        })
    }

    /// The parameters to store with the object (known from the start).
    pub fn params(&self) -> &SseParams {
        self.encryptor.params()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably (e.g. to drain a `Vec<u8>` between writes).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Seals the last chunk, writes it, and returns the inner writer and the parameters.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        self.check()?;
        let plaintext_len = self.encryptor.plaintext_len();
        let params = self.encryptor.finish(&mut self.out)?;
        self.inner.write_all(&self.out)?;
        Ok(Finished {
            inner: self.inner,
            params,
            plaintext_len,
            ciphertext_len: ciphertext_len(plaintext_len),
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "SSE-C writer failed earlier; the ciphertext is incomplete",
            ));
        }
        Ok(())
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.out.clear();
        let result = self
            .encryptor
            .update(buf, &mut self.out)
            .map_err(io::Error::from)
            .and_then(|()| self.inner.write_all(&self.out));
        self.out.clear();
        if let Err(e) = result {
            self.failed = true;
            return Err(e);
        }
        Ok(buf.len())
    }

    /// Flushes the inner writer. Plaintext of an unfinished chunk stays buffered.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Decryption
// ---------------------------------------------------------------------------------------------

/// Decrypts a plaintext range `[start, end)` of an object from the sealed chunks that hold it
/// (read the stored bytes [`RangeDecryptor::ciphertext_range`]). Feed those bytes in any split
/// with [`RangeDecryptor::update`]; it appends exactly the requested plaintext, and nothing that
/// failed authentication. [`RangeDecryptor::finish`] confirms that all chunks arrived.
pub struct RangeDecryptor {
    cipher: ChunkCipher,
    start: u64,
    end: u64,
    total: u64,
    /// Next chunk expected, last chunk wanted, and the object's final chunk.
    next: u64,
    last: u64,
    final_index: u64,
    /// Sealed bytes of the chunk being received.
    sealed: Vec<u8>,
}

impl RangeDecryptor {
    /// Checks the key (wrong key: [`SseError::KeyMismatch`]) and the range
    /// (`start <= end <= total`), for an object of `total` plaintext bytes.
    pub fn new(
        key: &CustomerKey,
        params: &SseParams,
        start: u64,
        end: u64,
        total: u64,
    ) -> Result<Self, SseError> {
        if start > end || end > total {
            return Err(SseError::InvalidRange { start, end, total });
        }
        let cipher = params.cipher(key)?;
        let (first, last) = chunk_span(start, end, total);
        Ok(Self {
            cipher,
            start,
            end,
            total,
            next: first,
            last,
            final_index: chunk_count(total) - 1,
            sealed: Vec::with_capacity(SEALED_CHUNK_SIZE),
        })
    }

    /// The whole object: [`RangeDecryptor::new`] with `[0, total)`.
    pub fn whole(key: &CustomerKey, params: &SseParams, total: u64) -> Result<Self, SseError> {
        Self::new(key, params, 0, total, total)
    }

    /// The stored byte range to read and feed in: [`ciphertext_range_for`] of this range.
    pub fn ciphertext_range(&self) -> (u64, u64) {
        ciphertext_range_for(self.start, self.end, self.total)
    }

    /// True once every chunk of the range has been received and authenticated.
    pub fn is_done(&self) -> bool {
        self.next > self.last
    }

    /// Takes the next stored bytes; appends to `out` the requested plaintext of every chunk they
    /// complete. Fails on a chunk that does not authenticate, or on bytes past the range's last
    /// chunk. After an error, stop: the response is damaged.
    pub fn update(&mut self, mut ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), SseError> {
        while !ciphertext.is_empty() {
            if self.is_done() {
                return Err(SseError::TrailingData);
            }
            let want = usize::try_from(sealed_len_of(self.next, self.total))
                .map_err(|_| SseError::TrailingData)?;
            let take = (want - self.sealed.len()).min(ciphertext.len());
            self.sealed.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
            if self.sealed.len() == want {
                self.open_chunk(out)?;
            }
        }
        Ok(())
    }

    /// Confirms the range is complete ([`SseError::Truncated`] if chunks are missing).
    pub fn finish(self) -> Result<(), SseError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(SseError::Truncated)
        }
    }

    fn open_chunk(&mut self, out: &mut Vec<u8>) -> Result<(), SseError> {
        let index = self.next;
        let len = self
            .cipher
            .open(index, index == self.final_index, &mut self.sealed)?;
        let chunk_start = index * CHUNK;
        let chunk_end = chunk_start + len as u64;
        let lo = self.start.max(chunk_start);
        let hi = self.end.min(chunk_end);
        if lo < hi {
            // Both offsets are within the chunk, so below CHUNK_SIZE: the casts are lossless.
            let (lo, hi) = ((lo - chunk_start) as usize, (hi - chunk_start) as usize);
            out.extend_from_slice(&self.sealed[lo..hi]);
        }
        self.sealed.clear();
        self.next += 1;
        Ok(())
    }
}

/// A [`Read`] adapter that decrypts a whole stored object, chunk by chunk, authenticating each
/// before any of its bytes are returned. The end of the object is the end of `inner`: the
/// chunk before it must be the final one, so a blob cut short (even at a chunk boundary) or
/// extended fails. Errors are [`io::ErrorKind::InvalidData`] carrying an [`SseError`]
/// ([`SseError::from_io`]).
pub struct DecryptingReader<R: Read> {
    inner: R,
    cipher: ChunkCipher,
    index: u64,
    /// Sealed bytes read ahead: up to one chunk plus one byte, to know whether a chunk is last.
    sealed: Vec<u8>,
    /// The current chunk, decrypted in place; `plain[pos..len]` is still to be returned.
    plain: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
    /// Set after a chunk failed: every later read fails the same way.
    failed: Option<SseError>,
}

impl<R: Read> DecryptingReader<R> {
    /// Checks the key (wrong key: [`SseError::KeyMismatch`]) and wraps the stored bytes.
    pub fn new(inner: R, key: &CustomerKey, params: &SseParams) -> Result<Self, SseError> {
        Ok(Self {
            inner,
            cipher: params.cipher(key)?,
            index: 0,
            sealed: Vec::with_capacity(SEALED_CHUNK_SIZE + 1),
            plain: Vec::with_capacity(SEALED_CHUNK_SIZE),
            pos: 0,
            len: 0,
            done: false,
            failed: None,
        })
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and opens the next chunk into `plain`.
    fn next_chunk(&mut self) -> io::Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone().into());
        }
        while self.sealed.len() <= SEALED_CHUNK_SIZE {
            let have = self.sealed.len();
            self.sealed.resize(SEALED_CHUNK_SIZE + 1, 0);
            let read = self.inner.read(&mut self.sealed[have..]);
            self.sealed.truncate(have + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let last = self.sealed.len() <= SEALED_CHUNK_SIZE;
        let take = self.sealed.len().min(SEALED_CHUNK_SIZE);
        self.plain.clear();
        self.plain.extend_from_slice(&self.sealed[..take]);
        self.sealed.drain(..take);
        match self.cipher.open(self.index, last, &mut self.plain) {
            Ok(len) => {
                self.len = len;
                self.pos = 0;
                self.index += 1;
                self.done = last;
                Ok(())
            }
            Err(err) => {
                self.plain.clear();
                self.failed = Some(err.clone());
                Err(err.into())
            }
        }
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = (self.len - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Serde helper
// ---------------------------------------------------------------------------------------------

/// Fixed-size byte arrays as standard base64 strings.
mod b64_array {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = B64.decode(text.as_bytes()).map_err(D::Error::custom)?;
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| D::Error::invalid_length(bytes.len(), &"a base64 byte array"))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const SIZES: [usize; 6] = [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        1024 * 1024 + 17,
    ];

    fn key(seed: u8) -> CustomerKey {
        let mut k = [0u8; KEY_SIZE];
        for (i, b) in k.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        CustomerKey::from_bytes(k)
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect()
    }

    fn encrypt(key: &CustomerKey, data: &[u8]) -> (Vec<u8>, SseParams) {
        let mut w = EncryptingWriter::new(Vec::new(), key).unwrap();
        // Uneven writes, to cross chunk boundaries at odd places.
        for piece in data.chunks(7_001) {
            w.write_all(piece).unwrap();
        }
        let done = w.finish().unwrap();
        assert_eq!(done.plaintext_len, data.len() as u64);
        assert_eq!(done.ciphertext_len, done.inner.len() as u64);
        (done.inner, done.params)
    }

    fn decrypt_all(key: &CustomerKey, params: &SseParams, ct: &[u8]) -> Result<Vec<u8>, SseError> {
        let mut r = DecryptingReader::new(ct, key, params)?;
        let mut out = Vec::new();
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(SseError::from_io(&e).cloned().unwrap()),
        }
    }

    fn decrypt_range(
        key: &CustomerKey,
        params: &SseParams,
        ct: &[u8],
        start: u64,
        end: u64,
        total: u64,
        split: usize,
    ) -> Result<Vec<u8>, SseError> {
        let mut d = RangeDecryptor::new(key, params, start, end, total)?;
        let (lo, hi) = d.ciphertext_range();
        assert_eq!((lo, hi), ciphertext_range_for(start, end, total));
        let slice = &ct[lo as usize..hi as usize];
        let mut out = Vec::new();
        for piece in slice.chunks(split.max(1)) {
            d.update(piece, &mut out)?;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip_sizes() {
        let k = key(1);
        for size in SIZES {
            let data = plaintext(size);
            let (ct, params) = encrypt(&k, &data);
            assert_eq!(ct.len() as u64, ciphertext_len(size as u64), "size {size}");
            assert_eq!(plaintext_len(ct.len() as u64), Some(size as u64));
            assert_eq!(decrypt_all(&k, &params, &ct).unwrap(), data, "size {size}");
            let total = size as u64;
            let whole = decrypt_range(&k, &params, &ct, 0, total, total, 10_000).unwrap();
            assert_eq!(whole, data);
            let mut d = RangeDecryptor::whole(&k, &params, total).unwrap();
            let mut out = Vec::new();
            d.update(&ct, &mut out).unwrap();
            d.finish().unwrap();
            assert_eq!(out, data);
        }
    }

    /// Returns at most 1000 bytes per read, and `Interrupted` every other call.
    struct Choppy<'a> {
        data: &'a [u8],
        flip: bool,
    }

    impl Read for Choppy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.flip = !self.flip;
            if self.flip {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(1000).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_survives_short_and_interrupted_reads() {
        let k = key(16);
        let data = plaintext(2 * CHUNK_SIZE + 3);
        let (ct, params) = encrypt(&k, &data);
        let inner = Choppy {
            data: &ct,
            flip: false,
        };
        let mut r = DecryptingReader::new(inner, &k, &params).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn reader_stays_failed() {
        let k = key(17);
        let (mut ct, params) = encrypt(&k, &plaintext(3 * CHUNK_SIZE));
        ct[SEALED_CHUNK_SIZE + 3] ^= 0x80;
        let mut r = DecryptingReader::new(&ct[..], &k, &params).unwrap();
        let mut buf = vec![0u8; CHUNK_SIZE];
        assert_eq!(r.read(&mut buf).unwrap(), CHUNK_SIZE);
        for _ in 0..3 {
            let e = r.read(&mut buf).unwrap_err();
            assert_eq!(
                SseError::from_io(&e),
                Some(&SseError::Tampered { chunk: 1 })
            );
        }
    }

    /// Pins the at-rest format to values computed independently (Python `cryptography`:
    /// HKDF-SHA256 and AES-256-GCM with the nonce and associated data described above).
    #[test]
    fn known_answers() {
        let key = CustomerKey::from_bytes(std::array::from_fn(|i| i as u8));
        let salt: [u8; SALT_SIZE] = std::array::from_fn(|i| 100 + i as u8);
        let check = Derived::new(&key, &salt).unwrap().key_check;
        assert_eq!(
            hex::encode(check),
            "5120630babd092b79cd59326bdd61120dc5c26ab726e2e3cfed6995b06c3bfc8"
        );
        let params = SseParams {
            version: FORMAT_VERSION,
            salt,
            key_check: check,
            server_key: None,
        };
        let seal = |data: &[u8]| {
            let mut enc = Encryptor::with_params(&key, params.clone()).unwrap();
            let mut out = Vec::new();
            enc.update(data, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            out
        };
        assert_eq!(
            hex::encode(seal(b"hello, seedbucket")),
            "434bba524523d59097e30f7f1c20a564f5076d259ee2f0c9e26d29afa6aed330ec"
        );
        assert_eq!(hex::encode(seal(b"")), "f14b71aa34c65fb438eaa4e8dc181765");
        let big: Vec<u8> = (0..=CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
        let sealed = seal(&big);
        assert_eq!(sealed.len(), 65_569);
        assert_eq!(
            hex::encode(<Sha256 as sha2::Digest>::digest(&sealed)),
            "a41810a51399239b2d36cb7b216fd006ef585f3792d861d73874495ccfdff463"
        );
        assert_eq!(decrypt_all(&key, &params, &sealed).unwrap(), big);
    }

    #[test]
    fn push_encryptor_matches_format() {
        let k = key(2);
        let data = plaintext(3 * CHUNK_SIZE + 5);
        let mut enc = Encryptor::new(&k).unwrap();
        let mut ct = Vec::new();
        for piece in data.chunks(CHUNK_SIZE) {
            enc.update(piece, &mut ct).unwrap();
        }
        enc.update(&[], &mut ct).unwrap();
        let params = enc.finish(&mut ct).unwrap();
        assert_eq!(ct.len() as u64, ciphertext_len(data.len() as u64));
        assert_eq!(decrypt_all(&k, &params, &ct).unwrap(), data);
    }

    #[test]
    fn exact_multiple_has_no_empty_trailing_chunk() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(1), 17);
        assert_eq!(ciphertext_len(CHUNK), SEALED);
        assert_eq!(ciphertext_len(CHUNK + 1), SEALED + 17);
        assert_eq!(ciphertext_len(2 * CHUNK), 2 * SEALED);
    }

    #[test]
    fn plaintext_len_inverts_and_rejects() {
        for p in [
            0,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            5 * CHUNK + 3,
            1 << 33,
        ] {
            assert_eq!(plaintext_len(ciphertext_len(p)), Some(p), "p = {p}");
        }
        for c in [0, 1, 15, SEALED + 1, SEALED + 16, 2 * SEALED + 15] {
            assert_eq!(plaintext_len(c), None, "c = {c}");
        }
    }

    #[test]
    fn range_arithmetic() {
        let total = 3 * CHUNK + 10;
        assert_eq!(ciphertext_range_for(0, 1, total), (0, SEALED));
        assert_eq!(
            ciphertext_range_for(CHUNK - 1, CHUNK + 1, total),
            (0, 2 * SEALED)
        );
        assert_eq!(
            ciphertext_range_for(3 * CHUNK, total, total),
            (3 * SEALED, 3 * SEALED + 26)
        );
        assert_eq!(
            ciphertext_range_for(0, total, total),
            (0, ciphertext_len(total))
        );
        // Empty object, empty range: its single chunk.
        assert_eq!(ciphertext_range_for(0, 0, 0), (0, 16));
        // Clamped.
        assert_eq!(ciphertext_range_for(0, u64::MAX, 5), (0, 21));
    }

    #[test]
    fn invalid_range_is_refused() {
        let k = key(3);
        let (_, params) = encrypt(&k, &plaintext(10));
        for (s, e) in [(5, 4), (0, 11), (11, 11)] {
            assert!(matches!(
                RangeDecryptor::new(&k, &params, s, e, 10),
                Err(SseError::InvalidRange { .. })
            ));
        }
    }

    fn big_object() -> &'static (Vec<u8>, Vec<u8>, SseParams) {
        static OBJ: OnceLock<(Vec<u8>, Vec<u8>, SseParams)> = OnceLock::new();
        OBJ.get_or_init(|| {
            let data = plaintext(1024 * 1024 + 17);
            let (ct, params) = encrypt(&key(4), &data);
            (data, ct, params)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_ranges(a in 0u64..=1_048_593, b in 0u64..=1_048_593, split in 1usize..200_000) {
            let (data, ct, params) = big_object();
            let total = data.len() as u64;
            let (start, end) = (a.min(b), a.max(b));
            let got = decrypt_range(&key(4), params, ct, start, end, total, split).unwrap();
            prop_assert_eq!(&got[..], &data[start as usize..end as usize]);
        }

        #[test]
        fn random_ranges_small_objects(size_idx in 0usize..5, a in 0u64..70_000, b in 0u64..70_000) {
            let size = SIZES[size_idx];
            let k = key(5);
            let data = plaintext(size);
            let (ct, params) = encrypt(&k, &data);
            let total = size as u64;
            let (start, end) = (a.min(b).min(total), a.max(b).min(total));
            let got = decrypt_range(&k, &params, &ct, start, end, total, 4_097).unwrap();
            prop_assert_eq!(&got[..], &data[start as usize..end as usize]);
        }

        #[test]
        fn lengths_invert(p in 0u64..(1u64 << 45)) {
            prop_assert_eq!(plaintext_len(ciphertext_len(p)), Some(p));
        }
    }

    #[test]
    fn wrong_key_is_recognised() {
        let (ct, params) = encrypt(&key(6), &plaintext(1000));
        let wrong = key(7);
        assert_eq!(params.verify(&wrong), Err(SseError::KeyMismatch));
        assert!(params.verify(&key(6)).is_ok());
        assert!(matches!(
            DecryptingReader::new(&ct[..], &wrong, &params),
            Err(SseError::KeyMismatch)
        ));
        assert!(matches!(
            RangeDecryptor::new(&wrong, &params, 0, 10, 1000),
            Err(SseError::KeyMismatch)
        ));
    }

    #[test]
    fn wrong_key_fails_authentication_even_past_the_check() {
        // Someone who forged the key check still cannot decrypt: the data key differs.
        let (ct, params) = encrypt(&key(8), &plaintext(1000));
        let wrong = key(9);
        let forged = SseParams {
            key_check: Derived::new(&wrong, &params.salt).unwrap().key_check,
            ..params.clone()
        };
        assert_eq!(
            decrypt_all(&wrong, &forged, &ct),
            Err(SseError::Tampered { chunk: 0 })
        );
    }

    #[test]
    fn tampered_byte_fails() {
        let k = key(10);
        let data = plaintext(2 * CHUNK_SIZE + 100);
        let (ct, params) = encrypt(&k, &data);
        let total = data.len() as u64;
        for pos in [
            0,
            1000,
            SEALED_CHUNK_SIZE - 1,
            SEALED_CHUNK_SIZE + 5,
            ct.len() - 1,
        ] {
            let mut bad = ct.clone();
            bad[pos] ^= 0x01;
            assert!(
                matches!(
                    decrypt_all(&k, &params, &bad),
                    Err(SseError::Tampered { .. })
                ),
                "pos {pos}"
            );
            assert!(
                matches!(
                    decrypt_range(&k, &params, &bad, 0, total, total, 999),
                    Err(SseError::Tampered { .. })
                ),
                "pos {pos}"
            );
        }
        let mut bad = params.clone();
        bad.salt[0] ^= 1;
        assert_eq!(bad.verify(&k), Err(SseError::KeyMismatch));
        let mut bad = params;
        bad.version = 2;
        assert_eq!(bad.verify(&k), Err(SseError::UnsupportedVersion(2)));
    }

    #[test]
    fn truncation_fails() {
        let k = key(11);
        for size in [0, 10, CHUNK_SIZE, 2 * CHUNK_SIZE + 100] {
            let data = plaintext(size);
            let (ct, params) = encrypt(&k, &data);
            // Final chunk cut by one byte.
            let cut = &ct[..ct.len() - 1];
            assert!(decrypt_all(&k, &params, cut).is_err(), "size {size}");
            // Final chunk dropped entirely (cut at a chunk boundary).
            let boundary = ct.len() - ct.len() % SEALED_CHUNK_SIZE;
            let boundary = if boundary == ct.len() {
                ct.len() - SEALED_CHUNK_SIZE.min(ct.len())
            } else {
                boundary
            };
            assert!(
                decrypt_all(&k, &params, &ct[..boundary]).is_err(),
                "size {size}"
            );
            // A range decryptor told the truncated length also refuses.
            if let Some(short_total) = plaintext_len(boundary as u64) {
                assert!(
                    decrypt_range(
                        &k,
                        &params,
                        &ct[..boundary],
                        0,
                        short_total,
                        short_total,
                        512
                    )
                    .is_err()
                );
            }
            // A range decryptor that gets fewer bytes than it asked for.
            let total = size as u64;
            let mut d = RangeDecryptor::whole(&k, &params, total).unwrap();
            let mut out = Vec::new();
            d.update(cut, &mut out).unwrap();
            assert_eq!(d.finish(), Err(SseError::Truncated));
        }
    }

    #[test]
    fn extension_fails() {
        let k = key(12);
        let data = plaintext(CHUNK_SIZE);
        let (ct, params) = encrypt(&k, &data);
        let mut longer = ct.clone();
        longer.extend_from_slice(&ct[..16]);
        assert!(decrypt_all(&k, &params, &longer).is_err());
        let mut d = RangeDecryptor::whole(&k, &params, CHUNK).unwrap();
        let mut out = Vec::new();
        assert_eq!(d.update(&longer, &mut out), Err(SseError::TrailingData));
    }

    #[test]
    fn swapped_chunks_fail() {
        let k = key(13);
        let data = plaintext(3 * CHUNK_SIZE + 1);
        let (ct, params) = encrypt(&k, &data);
        let mut swapped = ct.clone();
        let (a, b) = swapped.split_at_mut(SEALED_CHUNK_SIZE);
        a.swap_with_slice(&mut b[..SEALED_CHUNK_SIZE]);
        assert_eq!(
            decrypt_all(&k, &params, &swapped),
            Err(SseError::Tampered { chunk: 0 })
        );
        // A full chunk moved to the end in place of the final chunk.
        let mut reordered = ct[..3 * SEALED_CHUNK_SIZE].to_vec();
        reordered.extend_from_slice(&ct[..SEALED_CHUNK_SIZE]);
        assert!(decrypt_all(&k, &params, &reordered).is_err());
        // A chunk of another object under the same key does not fit either.
        let (other, _) = encrypt(&k, &data);
        let mut mixed = ct.clone();
        mixed[..SEALED_CHUNK_SIZE].copy_from_slice(&other[..SEALED_CHUNK_SIZE]);
        assert_eq!(
            decrypt_all(&k, &params, &mixed),
            Err(SseError::Tampered { chunk: 0 })
        );
    }

    #[test]
    fn ciphertext_hides_plaintext() {
        let k = key(14);
        let marker = b"seedbucket-secret-marker-0123456789";
        let data: Vec<u8> = marker.iter().copied().cycle().take(200_000).collect();
        let (ct, params) = encrypt(&k, &data);
        assert!(!ct.windows(16).any(|w| marker.windows(16).any(|m| m == w)));
        // Same key and plaintext again: different salt, different ciphertext.
        let (ct2, params2) = encrypt(&k, &data);
        assert_ne!(params.salt, params2.salt);
        assert_ne!(ct[..64], ct2[..64]);
        // Nothing stored names the key.
        let json = serde_json::to_string(&params).unwrap();
        assert!(!json.contains(&B64.encode(k.bytes())));
    }

    #[test]
    fn params_serde_round_trip() {
        let params = SseParams::generate(&key(15)).unwrap();
        let json = serde_json::to_value(&params).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["salt"].as_str().unwrap().len(), 24);
        assert_eq!(json["key_check"].as_str().unwrap().len(), 44);
        let back: SseParams = serde_json::from_value(json).unwrap();
        assert_eq!(back, params);
        let bad = serde_json::json!({"version": 1, "salt": "AAAA", "key_check": ""});
        assert!(serde_json::from_value::<SseParams>(bad).is_err());
    }

    fn headers(key: &[u8]) -> (String, String) {
        (
            B64.encode(key),
            B64.encode(<[u8; 16]>::from(Md5::digest(key))),
        )
    }

    #[test]
    fn header_parsing() {
        let raw = [7u8; 32];
        let (k, m) = headers(&raw);
        let parsed = CustomerKey::parse("AES256", &k, &m).unwrap();
        assert_eq!(parsed.key_md5_base64(), m);
        assert_eq!(parsed.bytes(), &raw[..]);
        assert!(!format!("{parsed:?}").contains(&k));

        assert!(matches!(
            CustomerKey::from_headers(None, None, None),
            Ok(None)
        ));
        assert!(matches!(
            CustomerKey::from_headers(Some(""), Some(""), None),
            Ok(None)
        ));
        assert!(matches!(
            CustomerKey::from_headers(Some("AES256"), Some(&k), Some(&m)),
            Ok(Some(_))
        ));
        let err = |a: Option<&str>, k: Option<&str>, m: Option<&str>| {
            CustomerKey::from_headers(a, k, m).unwrap_err()
        };
        assert_eq!(err(None, Some(&k), Some(&m)), KeyError::MissingAlgorithm);
        assert_eq!(err(Some("AES256"), None, Some(&m)), KeyError::MissingKey);
        assert_eq!(err(Some("AES256"), Some(&k), None), KeyError::MissingKeyMd5);
        assert_eq!(
            err(Some("aws:kms"), Some(&k), Some(&m)),
            KeyError::UnsupportedAlgorithm
        );
        assert_eq!(
            KeyError::UnsupportedAlgorithm.s3_code(),
            "InvalidEncryptionAlgorithmError"
        );

        // Key MD5 mismatch, including an MD5 that is not base64 at all.
        let (_, other_md5) = headers(&[8u8; 32]);
        assert_eq!(
            err(Some("AES256"), Some(&k), Some(&other_md5)),
            KeyError::KeyMd5Mismatch
        );
        assert_eq!(
            err(Some("AES256"), Some(&k), Some("not base64!")),
            KeyError::KeyMd5Mismatch
        );
        assert_eq!(KeyError::KeyMd5Mismatch.s3_code(), "InvalidArgument");
        assert_eq!(
            KeyError::KeyMd5Mismatch.to_string(),
            "The calculated MD5 hash of the key did not match the hash that was provided."
        );

        // Keys of the wrong length or not base64.
        for bad in [&[1u8; 16][..], &[1u8; 31][..], &[1u8; 33][..]] {
            let (bk, bm) = headers(bad);
            assert_eq!(
                err(Some("AES256"), Some(&bk), Some(&bm)),
                KeyError::InvalidKey
            );
        }
        assert_eq!(
            err(Some("AES256"), Some("%%%"), Some(&m)),
            KeyError::InvalidKey
        );
    }
}
