//! Length-prefixed peer messages: BEP 3, BEP 6 (fast), BEP 10 (`extended`), BEP 52 (hashes).
//!
//! A frame is a 4-byte big-endian length, then that many bytes: an id byte and its payload (a
//! length of 0 is a keep-alive).

use bytes::Bytes;

use super::Source;

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const INTERESTED: u8 = 2;
const NOT_INTERESTED: u8 = 3;
const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const REQUEST: u8 = 6;
const PIECE: u8 = 7;
const CANCEL: u8 = 8;
const PORT: u8 = 9;
const SUGGEST: u8 = 0x0D;
const HAVE_ALL: u8 = 0x0E;
const HAVE_NONE: u8 = 0x0F;
const REJECT: u8 = 0x10;
const ALLOWED_FAST: u8 = 0x11;
const EXTENDED: u8 = 20;
const HASH_REQUEST: u8 = 21;
const HASHES: u8 = 22;
const HASH_REJECT: u8 = 23;

/// Bytes of a hash request after the id: pieces root, base layer, index, length, proof layers.
const HASH_REQUEST_LEN: usize = 32 + 4 * 4;

/// Bytes before the block in a `piece` message: length prefix, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;
/// Bytes before the hashes in a BEP 52 `hashes` message: length prefix, id, request fields.
pub const HASHES_HEADER_LEN: usize = 5 + HASH_REQUEST_LEN;

/// Why bytes are not a valid handshake, frame or bitfield, or why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The handshake does not start with `19 "BitTorrent protocol"`.
    #[error("not a BitTorrent handshake")]
    BadProtocol,
    /// A length prefix above the caller's limit (parsing), or a message too long for a 32-bit
    /// length prefix (encoding).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong { len: u64, max: u64 },
    /// A message whose length does not fit its id; `len` counts the id byte and the payload.
    #[error("message id {id} cannot be {len} bytes long")]
    BadLength { id: u8, len: usize },
    /// A bitfield of the wrong size for the torrent's piece count.
    #[error("bitfield of {got} bytes, expected {expected}")]
    BitfieldLength { expected: usize, got: usize },
    /// A bitfield with bits set past the last piece.
    #[error("bitfield has spare bits set")]
    SpareBits,
}

/// The fields of a BEP 52 `hash request`, also the header of `hashes` and `hash reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// The file's merkle root (its `pieces root` in the file tree).
    pub pieces_root: [u8; 32],
    /// Layer of the requested hashes, counted up from the 16 KiB leaves (0).
    pub base_layer: u32,
    /// Index of the first requested hash in that layer.
    pub index: u32,
    /// Number of hashes requested.
    pub length: u32,
    /// Number of uncle-hash layers wanted above the requested ones.
    pub proof_layers: u32,
}

impl HashRequest {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pieces_root);
        for n in [self.base_layer, self.index, self.length, self.proof_layers] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, PeerError> {
        Ok(Self {
            pieces_root: r.array()?,
            base_layer: r.u32()?,
            index: r.u32()?,
            length: r.u32()?,
            proof_layers: r.u32()?,
        })
    }
}

/// One peer message.
///
/// Variable payloads are [`Bytes`]: [`Message::parse_bytes`] shares them with the input buffer,
/// [`Message::parse`] copies them. Ids this codec does not know come back as
/// [`Message::Unknown`] rather than an error, so a connection can ignore them as BEP 3 clients
/// do; whether to drop the peer instead is the caller's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Length 0, no id.
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    /// BEP 3 `have`: the sender has this piece.
    Have(u32),
    /// BEP 3 `bitfield`, raw; check it against the piece count with
    /// [`Bitfield::from_peer`](super::Bitfield::from_peer).
    Bitfield(Bytes),
    /// BEP 3 `request` for `length` bytes at `begin` in piece `index`; check it with
    /// [`block_offset`](super::block_offset).
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// BEP 3 `piece`: a block of data. To send one without copying the block, write
    /// [`encode_piece_header`] and then the block bytes.
    Piece {
        index: u32,
        begin: u32,
        block: Bytes,
    },
    /// BEP 3 `cancel` of an earlier request.
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// BEP 5 `port`: the sender's DHT port.
    Port(u16),
    /// BEP 6 `suggest piece`.
    Suggest(u32),
    /// BEP 6 `have all`.
    HaveAll,
    /// BEP 6 `have none`.
    HaveNone,
    /// BEP 6 `reject request`.
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// BEP 6 `allowed fast`.
    AllowedFast(u32),
    /// BEP 10 `extended`: extension message `id` (0 is the extension handshake) and its
    /// payload, see [`ExtensionHandshake`](super::ExtensionHandshake) and
    /// [`MetadataMsg`](super::MetadataMsg).
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// BEP 52 `hash request`.
    HashRequest(HashRequest),
    /// BEP 52 `hashes`: the request's fields, then the hashes (32 bytes each; the requested
    /// ones followed by the uncle hashes of the proof).
    Hashes {
        request: HashRequest,
        hashes: Bytes,
    },
    /// BEP 52 `hash reject`.
    HashReject(HashRequest),
    /// An id not listed above, with its payload. Encoding one with a known id gives bytes that
    /// parse as that id's message (or fail to).
    Unknown {
        id: u8,
        payload: Bytes,
    },
}

/// The total size (prefix included) of the frame starting `buf`, as soon as its 4-byte length
/// prefix is there; `Ok(None)` before that. Errors when the length exceeds `max_message_len`,
/// so a caller can size its buffer from the answer without trusting the peer.
pub fn frame_size(buf: &[u8], max_message_len: usize) -> Result<Option<usize>, PeerError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    let too_long = PeerError::TooLong {
        len: u64::from(len),
        max: u64::try_from(max_message_len).unwrap_or(u64::MAX),
    };
    let n = usize::try_from(len).map_err(|_| too_long.clone())?;
    if n > max_message_len {
        return Err(too_long);
    }
    n.checked_add(4).map(Some).ok_or(too_long)
}

/// A `max_message_len` that admits every message a seeder should accept for a torrent of
/// `piece_count` pieces: a 16 KiB block with its header, a `ut_metadata` piece, a few hundred
/// BEP 52 hashes, or the torrent's bitfield, whichever is largest (at least 32 KiB).
pub fn recommended_max_message_len(piece_count: u32) -> usize {
    let bitfield = usize::try_from(piece_count.div_ceil(8)).unwrap_or(usize::MAX);
    bitfield.saturating_add(1).max(32 * 1024)
}

/// The 13 bytes before a `piece` message's block: length prefix, id 7, index, begin. Write
/// them, then the `block_len` bytes of the block. Errors only when `block_len` leaves no room
/// for the header in a 32-bit length.
pub fn encode_piece_header(
    index: u32,
    begin: u32,
    block_len: u32,
) -> Result<[u8; PIECE_HEADER_LEN], PeerError> {
    let len = block_len.checked_add(9).ok_or(PeerError::TooLong {
        len: u64::from(block_len),
        max: u64::from(u32::MAX - 9),
    })?;
    let mut out = [0u8; PIECE_HEADER_LEN];
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out[4] = PIECE;
    out[5..9].copy_from_slice(&index.to_be_bytes());
    out[9..13].copy_from_slice(&begin.to_be_bytes());
    Ok(out)
}

/// The 53 bytes before a BEP 52 `hashes` message's hashes: length prefix, id 22, the request's
/// fields. Write them, then the `hashes_len` bytes of hashes (for example a slice of a stored
/// piece layer). `hashes_len` must be a multiple of 32.
pub fn encode_hashes_header(
    request: &HashRequest,
    hashes_len: usize,
) -> Result<[u8; HASHES_HEADER_LEN], PeerError> {
    if !hashes_len.is_multiple_of(32) {
        return Err(PeerError::BadLength {
            id: HASHES,
            len: hashes_len.saturating_add(1 + HASH_REQUEST_LEN),
        });
    }
    let prefix = body_len(1 + HASH_REQUEST_LEN, hashes_len)?;
    let mut out = [0u8; HASHES_HEADER_LEN];
    out[0..4].copy_from_slice(&prefix.to_be_bytes());
    out[4] = HASHES;
    out[5..37].copy_from_slice(&request.pieces_root);
    out[37..41].copy_from_slice(&request.base_layer.to_be_bytes());
    out[41..45].copy_from_slice(&request.index.to_be_bytes());
    out[45..49].copy_from_slice(&request.length.to_be_bytes());
    out[49..53].copy_from_slice(&request.proof_layers.to_be_bytes());
    Ok(out)
}

/// The length prefix for `fixed` bytes (id included) plus a `payload` of this many bytes.
fn body_len(fixed: usize, payload: usize) -> Result<u32, PeerError> {
    fixed
        .checked_add(payload)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(PeerError::TooLong {
            len: u64::try_from(payload).unwrap_or(u64::MAX),
            max: u64::from(u32::MAX).saturating_sub(u64::try_from(fixed).unwrap_or(0)),
        })
}

/// Reads big-endian fields from a message body whose length was already checked; a short read
/// is still an error, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    id: u8,
    len: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PeerError> {
        let Some((head, rest)) = self.buf.split_first_chunk::<N>() else {
            return Err(PeerError::BadLength {
                id: self.id,
                len: self.len,
            });
        };
        self.buf = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, PeerError> {
        self.array().map(u32::from_be_bytes)
    }
}

impl Message {
    /// Parses the frame at the start of `buf`, copying variable payloads.
    /// `Ok(Some((message, bytes_used)))`, or `Ok(None)` until the whole frame is in `buf`.
    /// `max_message_len` caps the length prefix (id and payload), see
    /// [`recommended_max_message_len`].
    pub fn parse(buf: &[u8], max_message_len: usize) -> Result<Option<(Self, usize)>, PeerError> {
        let Some(size) = frame_size(buf, max_message_len)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(4..size) else {
            return Ok(None);
        };
        Ok(Some((Self::decode(body)?, size)))
    }

    /// Like [`Message::parse`], but payloads (a piece's block, a bitfield, an extension
    /// message, hashes) share `buf`'s memory instead of being copied. For a framed reader:
    /// `frame_size` tells when a frame is complete, `split_to(size).freeze()` takes it out of
    /// the read buffer, and this parses it.
    pub fn parse_bytes(
        buf: &Bytes,
        max_message_len: usize,
    ) -> Result<Option<(Self, usize)>, PeerError> {
        let Some(size) = frame_size(buf, max_message_len)? else {
            return Ok(None);
        };
        if buf.len() < size {
            return Ok(None);
        }
        Ok(Some((Self::decode(buf.slice(4..size))?, size)))
    }

    /// Decodes a frame's body (everything after the length prefix).
    fn decode<S: Source>(body: S) -> Result<Self, PeerError> {
        let b = body.as_ref();
        let len = b.len();
        let Some((&id, rest)) = b.split_first() else {
            return Ok(Self::KeepAlive);
        };
        let bad = PeerError::BadLength { id, len };
        let exact = |n: usize| {
            if rest.len() == n {
                Ok(())
            } else {
                Err(bad.clone())
            }
        };
        let at_least = |n: usize| {
            if rest.len() >= n {
                Ok(())
            } else {
                Err(bad.clone())
            }
        };
        let mut r = Reader { buf: rest, id, len };
        Ok(match id {
            CHOKE => exact(0).map(|()| Self::Choke)?,
            UNCHOKE => exact(0).map(|()| Self::Unchoke)?,
            INTERESTED => exact(0).map(|()| Self::Interested)?,
            NOT_INTERESTED => exact(0).map(|()| Self::NotInterested)?,
            HAVE_ALL => exact(0).map(|()| Self::HaveAll)?,
            HAVE_NONE => exact(0).map(|()| Self::HaveNone)?,
            HAVE | SUGGEST | ALLOWED_FAST => {
                exact(4)?;
                let n = r.u32()?;
                match id {
                    HAVE => Self::Have(n),
                    SUGGEST => Self::Suggest(n),
                    _ => Self::AllowedFast(n),
                }
            }
            REQUEST | CANCEL | REJECT => {
                exact(12)?;
                let (index, begin, length) = (r.u32()?, r.u32()?, r.u32()?);
                match id {
                    REQUEST => Self::Request {
                        index,
                        begin,
                        length,
                    },
                    CANCEL => Self::Cancel {
                        index,
                        begin,
                        length,
                    },
                    _ => Self::Reject {
                        index,
                        begin,
                        length,
                    },
                }
            }
            BITFIELD => Self::Bitfield(body.tail(1)),
            PIECE => {
                at_least(8)?;
                Self::Piece {
                    index: r.u32()?,
                    begin: r.u32()?,
                    block: body.tail(9),
                }
            }
            PORT => {
                exact(2)?;
                Self::Port(u16::from_be_bytes(r.array()?))
            }
            EXTENDED => {
                at_least(1)?;
                let [ext] = r.array()?;
                Self::Extended {
                    id: ext,
                    payload: body.tail(2),
                }
            }
            HASH_REQUEST | HASH_REJECT => {
                exact(HASH_REQUEST_LEN)?;
                let request = HashRequest::read(&mut r)?;
                if id == HASH_REQUEST {
                    Self::HashRequest(request)
                } else {
                    Self::HashReject(request)
                }
            }
            HASHES => {
                at_least(HASH_REQUEST_LEN)?;
                if !(rest.len() - HASH_REQUEST_LEN).is_multiple_of(32) {
                    return Err(bad);
                }
                Self::Hashes {
                    request: HashRequest::read(&mut r)?,
                    hashes: body.tail(1 + HASH_REQUEST_LEN),
                }
            }
            _ => Self::Unknown {
                id,
                payload: body.tail(1),
            },
        })
    }

    /// The id byte; `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Self::KeepAlive => return None,
            Self::Choke => CHOKE,
            Self::Unchoke => UNCHOKE,
            Self::Interested => INTERESTED,
            Self::NotInterested => NOT_INTERESTED,
            Self::Have(_) => HAVE,
            Self::Bitfield(_) => BITFIELD,
            Self::Request { .. } => REQUEST,
            Self::Piece { .. } => PIECE,
            Self::Cancel { .. } => CANCEL,
            Self::Port(_) => PORT,
            Self::Suggest(_) => SUGGEST,
            Self::HaveAll => HAVE_ALL,
            Self::HaveNone => HAVE_NONE,
            Self::Reject { .. } => REJECT,
            Self::AllowedFast(_) => ALLOWED_FAST,
            Self::Extended { .. } => EXTENDED,
            Self::HashRequest(_) => HASH_REQUEST,
            Self::Hashes { .. } => HASHES,
            Self::HashReject(_) => HASH_REJECT,
            Self::Unknown { id, .. } => *id,
        })
    }

    /// Appends the message, length prefix included, to `out`. Errors when a payload is too long
    /// for a 32-bit length prefix, or for `hashes` not made of whole 32-byte hashes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PeerError> {
        let Some(id) = self.id() else {
            out.extend_from_slice(&[0; 4]);
            return Ok(());
        };
        // Fixed bytes (id included) and the variable payload written after them.
        let (fixed, payload): (usize, &[u8]) = match self {
            Self::Have(_) | Self::Suggest(_) | Self::AllowedFast(_) => (5, &[]),
            Self::Request { .. } | Self::Cancel { .. } | Self::Reject { .. } => (13, &[]),
            Self::Port(_) => (3, &[]),
            Self::Bitfield(p) | Self::Unknown { payload: p, .. } => (1, p),
            Self::Piece { block, .. } => (9, block),
            Self::Extended { payload, .. } => (2, payload),
            Self::HashRequest(_) | Self::HashReject(_) => (1 + HASH_REQUEST_LEN, &[]),
            Self::Hashes { hashes, .. } => {
                if !hashes.len().is_multiple_of(32) {
                    return Err(PeerError::BadLength {
                        id,
                        len: hashes.len().saturating_add(1 + HASH_REQUEST_LEN),
                    });
                }
                (1 + HASH_REQUEST_LEN, hashes)
            }
            _ => (1, &[]),
        };
        let len = body_len(fixed, payload.len())?;
        out.reserve(4 + fixed + payload.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.push(id);
        match self {
            Self::Have(n) | Self::Suggest(n) | Self::AllowedFast(n) => {
                out.extend_from_slice(&n.to_be_bytes());
            }
            Self::Request {
                index,
                begin,
                length,
            }
            | Self::Cancel {
                index,
                begin,
                length,
            }
            | Self::Reject {
                index,
                begin,
                length,
            } => {
                for n in [index, begin, length] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            Self::Piece { index, begin, .. } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
            }
            Self::Port(p) => out.extend_from_slice(&p.to_be_bytes()),
            Self::Extended { id: ext, .. } => out.push(*ext),
            Self::HashRequest(r) | Self::HashReject(r) | Self::Hashes { request: r, .. } => {
                r.write(out);
            }
            _ => {}
        }
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The encoded message as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, PeerError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 16;

    fn root() -> HashRequest {
        HashRequest {
            pieces_root: [7; 32],
            base_layer: 2,
            index: 512,
            length: 4,
            proof_layers: 3,
        }
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(0x0102_0304),
            Message::Bitfield(Bytes::from_static(&[0xFF, 0x80])),
            Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Piece {
                index: 3,
                begin: 0,
                block: Bytes::from_static(b"hello"),
            },
            Message::Cancel {
                index: 1,
                begin: 2,
                length: 3,
            },
            Message::Port(6881),
            Message::Suggest(9),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject {
                index: 4,
                begin: 5,
                length: 6,
            },
            Message::AllowedFast(10),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
            Message::HashRequest(root()),
            Message::Hashes {
                request: root(),
                hashes: Bytes::from(vec![1u8; 64]),
            },
            Message::HashReject(root()),
            Message::Unknown {
                id: 99,
                payload: Bytes::from_static(b"xyz"),
            },
        ]
    }

    /// A frame with the given body (id and payload).
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn exact_bytes() {
        let cases: [(Message, &[u8]); 7] = [
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Interested, &[0, 0, 0, 1, 2]),
            (Message::Have(258), &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
            (
                Message::Request {
                    index: 1,
                    begin: 2,
                    length: 3,
                },
                &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            ),
            (Message::Port(0x1AE1), &[0, 0, 0, 3, 9, 0x1A, 0xE1]),
            (Message::HaveAll, &[0, 0, 0, 1, 0x0E]),
            (
                Message::Extended {
                    id: 3,
                    payload: Bytes::from_static(b"x"),
                },
                &[0, 0, 0, 3, 20, 3, b'x'],
            ),
        ];
        for (m, bytes) in cases {
            assert_eq!(m.to_vec().unwrap(), bytes, "{m:?}");
        }
        let hr = Message::HashRequest(root()).to_vec().unwrap();
        assert_eq!(hr.len(), 4 + 49);
        assert_eq!(hr[..5], [0, 0, 0, 49, 21]);
        assert_eq!(hr[5..37], [7; 32]);
        assert_eq!(hr[37..], [0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
    }

    #[test]
    fn round_trips_and_incomplete() {
        for m in samples() {
            let bytes = m.to_vec().unwrap();
            assert_eq!(
                Message::parse(&bytes, MAX),
                Ok(Some((m.clone(), bytes.len())))
            );
            let shared = Bytes::from(bytes.clone());
            assert_eq!(
                Message::parse_bytes(&shared, MAX),
                Ok(Some((m.clone(), bytes.len())))
            );
            for n in 0..bytes.len() {
                assert_eq!(Message::parse(&bytes[..n], MAX), Ok(None), "{m:?} {n}");
                assert_eq!(
                    Message::parse_bytes(&shared.slice(..n), MAX),
                    Ok(None),
                    "{m:?} {n}"
                );
            }
            let mut two = bytes.clone();
            two.extend_from_slice(&bytes);
            assert_eq!(Message::parse(&two, MAX), Ok(Some((m, bytes.len()))));
        }
    }

    #[test]
    fn parse_bytes_shares_the_block() {
        let m = Message::Piece {
            index: 0,
            begin: 0,
            block: Bytes::from(vec![9u8; 100]),
        };
        let buf = Bytes::from(m.to_vec().unwrap());
        let Ok(Some((Message::Piece { block, .. }, _))) = Message::parse_bytes(&buf, MAX) else {
            panic!()
        };
        assert_eq!(block.as_ptr(), buf[13..].as_ptr());
    }

    #[test]
    fn wrong_lengths() {
        let fixed: [(u8, usize); 15] = [
            (CHOKE, 0),
            (UNCHOKE, 0),
            (INTERESTED, 0),
            (NOT_INTERESTED, 0),
            (HAVE, 4),
            (REQUEST, 12),
            (CANCEL, 12),
            (PORT, 2),
            (SUGGEST, 4),
            (HAVE_ALL, 0),
            (HAVE_NONE, 0),
            (REJECT, 12),
            (ALLOWED_FAST, 4),
            (HASH_REQUEST, 48),
            (HASH_REJECT, 48),
        ];
        for (id, n) in fixed {
            let mut body = vec![id];
            body.resize(1 + n, 0);
            assert!(Message::parse(&frame(&body), MAX).is_ok_and(|m| m.is_some()));
            for wrong in [n.wrapping_sub(1), n + 1, n + 4] {
                if wrong > n + 4 {
                    continue;
                }
                let mut body = vec![id];
                body.resize(1 + wrong, 0);
                assert_eq!(
                    Message::parse(&frame(&body), MAX),
                    Err(PeerError::BadLength { id, len: 1 + wrong }),
                    "id {id} len {wrong}"
                );
            }
        }
        // Minimum lengths for the variable-length messages.
        for (id, min) in [(PIECE, 8), (EXTENDED, 1), (HASHES, 48)] {
            for short in 0..min {
                let mut body = vec![id];
                body.resize(1 + short, 0);
                assert_eq!(
                    Message::parse(&frame(&body), MAX),
                    Err(PeerError::BadLength { id, len: 1 + short })
                );
            }
        }
        // Hashes must be whole 32-byte hashes.
        let mut body = vec![HASHES];
        body.resize(1 + 48 + 31, 0);
        assert!(Message::parse(&frame(&body), MAX).is_err());
        body.push(0);
        assert!(Message::parse(&frame(&body), MAX).is_ok());
        // Empty bitfield, piece block and extension payloads are shapes, not errors.
        assert_eq!(
            Message::parse(&frame(&[BITFIELD]), MAX),
            Ok(Some((Message::Bitfield(Bytes::new()), 5)))
        );
    }

    #[test]
    fn length_cap() {
        // Refused from the 4 prefix bytes alone, before any payload arrives.
        let prefix = 17u32.to_be_bytes();
        assert_eq!(
            Message::parse(&prefix, 16),
            Err(PeerError::TooLong { len: 17, max: 16 })
        );
        assert_eq!(
            frame_size(&u32::MAX.to_be_bytes(), MAX),
            Err(PeerError::TooLong {
                len: u64::from(u32::MAX),
                max: MAX as u64
            })
        );
        assert_eq!(Message::parse(&prefix, 17), Ok(None));
        assert_eq!(frame_size(&prefix, 17), Ok(Some(21)));
        assert_eq!(frame_size(&prefix[..3], 17), Ok(None));
        assert_eq!(
            Message::parse(&[0, 0, 0, 0], 0),
            Ok(Some((Message::KeepAlive, 4)))
        );
    }

    #[test]
    fn unknown_ids() {
        for id in [10u8, 11, 12, 18, 19, 24, 255] {
            assert_eq!(
                Message::parse(&frame(&[id, 1, 2]), MAX),
                Ok(Some((
                    Message::Unknown {
                        id,
                        payload: Bytes::from_static(&[1, 2])
                    },
                    7
                )))
            );
        }
    }

    #[test]
    fn piece_header_matches_encode() {
        let block = vec![5u8; 16384];
        let m = Message::Piece {
            index: 7,
            begin: 32768,
            block: Bytes::from(block.clone()),
        };
        let mut split = encode_piece_header(7, 32768, 16384).unwrap().to_vec();
        split.extend_from_slice(&block);
        assert_eq!(split, m.to_vec().unwrap());
        assert!(encode_piece_header(0, 0, u32::MAX - 9).is_ok());
        assert!(encode_piece_header(0, 0, u32::MAX - 8).is_err());
    }

    #[test]
    fn hashes_header_matches_encode() {
        let hashes = vec![3u8; 96];
        let m = Message::Hashes {
            request: root(),
            hashes: Bytes::from(hashes.clone()),
        };
        let mut split = encode_hashes_header(&root(), 96).unwrap().to_vec();
        split.extend_from_slice(&hashes);
        assert_eq!(split, m.to_vec().unwrap());
        assert!(encode_hashes_header(&root(), 33).is_err());
        let bad = Message::Hashes {
            request: root(),
            hashes: Bytes::from_static(&[0; 31]),
        };
        assert!(bad.to_vec().is_err());
    }

    #[test]
    fn recommended_cap() {
        assert_eq!(recommended_max_message_len(1), 32768);
        assert_eq!(recommended_max_message_len(8 * 100_000), 100_001);
        let piece = Message::Piece {
            index: 0,
            begin: 0,
            block: Bytes::from(vec![0; 16384]),
        }
        .to_vec()
        .unwrap();
        assert!(Message::parse(&piece, recommended_max_message_len(1)).is_ok());
    }

    fn arb_request() -> impl Strategy<Value = HashRequest> {
        (
            any::<[u8; 32]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(pieces_root, base_layer, index, length, proof_layers)| {
                HashRequest {
                    pieces_root,
                    base_layer,
                    index,
                    length,
                    proof_layers,
                }
            })
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let known = [
            CHOKE,
            UNCHOKE,
            INTERESTED,
            NOT_INTERESTED,
            HAVE,
            BITFIELD,
            REQUEST,
            PIECE,
            CANCEL,
            PORT,
            SUGGEST,
            HAVE_ALL,
            HAVE_NONE,
            REJECT,
            ALLOWED_FAST,
            EXTENDED,
            HASH_REQUEST,
            HASHES,
            HASH_REJECT,
        ];
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Suggest),
            any::<u32>().prop_map(Message::AllowedFast),
            any::<u16>().prop_map(Message::Port),
            arb_bytes().prop_map(Message::Bitfield),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| {
                Message::Request {
                    index,
                    begin,
                    length,
                }
            }),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| {
                Message::Cancel {
                    index,
                    begin,
                    length,
                }
            }),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| {
                Message::Reject {
                    index,
                    begin,
                    length,
                }
            }),
            (any::<u32>(), any::<u32>(), arb_bytes()).prop_map(|(index, begin, block)| {
                Message::Piece {
                    index,
                    begin,
                    block,
                }
            }),
            (any::<u8>(), arb_bytes()).prop_map(|(id, payload)| Message::Extended { id, payload }),
            arb_request().prop_map(Message::HashRequest),
            arb_request().prop_map(Message::HashReject),
            (
                arb_request(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..4)
            )
                .prop_map(|(request, hs)| Message::Hashes {
                    request,
                    hashes: Bytes::from(hs.concat()),
                }),
            (
                any::<u8>().prop_filter("unknown id", move |id| !known.contains(id)),
                arb_bytes()
            )
                .prop_map(|(id, payload)| Message::Unknown { id, payload }),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), max in 0usize..300) {
            let copied = Message::parse(&b, max);
            let shared = Message::parse_bytes(&Bytes::from(b.clone()), max);
            prop_assert_eq!(copied, shared);
            let _ = frame_size(&b, max);
        }

        #[test]
        fn arbitrary_bodies_never_panic(id in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut body = vec![id];
            body.extend_from_slice(&rest);
            let f = frame(&body);
            if let Ok(Some((m, used))) = Message::parse(&f, MAX) {
                prop_assert_eq!(used, f.len());
                // Whatever parses re-encodes to the same bytes.
                prop_assert_eq!(m.to_vec().unwrap(), f);
            }
        }

        #[test]
        fn round_trips(m in arb_message()) {
            let bytes = m.to_vec().unwrap();
            prop_assert_eq!(Message::parse(&bytes, MAX), Ok(Some((m.clone(), bytes.len()))));
            prop_assert_eq!(
                Message::parse_bytes(&Bytes::from(bytes.clone()), MAX),
                Ok(Some((m, bytes.len())))
            );
            prop_assert_eq!(Message::parse(&bytes[..bytes.len() - 1], MAX), Ok(None));
        }
    }
}
