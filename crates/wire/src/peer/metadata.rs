//! BEP 9 `ut_metadata` messages: fetching the info dictionary from peers in 16 KiB pieces.
//!
//! Each message is a bencoded dictionary (`msg_type`, `piece`, and for data `total_size`); a
//! data message carries the piece's raw bytes right after the dictionary.

use std::ops::Range;

use bytes::Bytes;
use seedbucket_bencode::{DictWriter, Value};

use super::extension::{ExtensionError, dict};
use super::{Message, Source};

/// Size of every metadata piece but the last.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

const REQUEST: i64 = 0;
const DATA: i64 = 1;
const REJECT: i64 = 2;

/// A `ut_metadata` message (the payload of an `extended` message on the id the peer chose for
/// `ut_metadata` in its [`ExtensionHandshake`](super::ExtensionHandshake)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    /// Asks for metadata piece `piece`.
    Request { piece: u32 },
    /// Metadata piece `piece` of an info dictionary of `total_size` bytes.
    Data {
        piece: u32,
        total_size: usize,
        data: Bytes,
    },
    /// The sender will not send piece `piece`.
    Reject { piece: u32 },
    /// A `msg_type` this codec does not know; BEP 9 says to ignore it.
    Unknown { msg_type: i64 },
}

/// How many metadata pieces an info dictionary of `size` bytes has. Errors for 0 bytes (no
/// torrent has empty metadata) or a count that does not fit a `u32`.
pub fn metadata_piece_count(size: usize) -> Result<u32, ExtensionError> {
    if size == 0 {
        return Err(ExtensionError::Invalid("metadata size"));
    }
    u32::try_from(size.div_ceil(METADATA_PIECE_LEN))
        .map_err(|_| ExtensionError::Invalid("metadata size"))
}

/// The byte range of metadata piece `piece` in an info dictionary of `size` bytes.
pub fn metadata_piece_range(size: usize, piece: u32) -> Result<Range<usize>, ExtensionError> {
    if piece >= metadata_piece_count(size)? {
        return Err(ExtensionError::Invalid("piece"));
    }
    let start = usize::try_from(piece)
        .ok()
        .and_then(|p| p.checked_mul(METADATA_PIECE_LEN))
        .ok_or(ExtensionError::Invalid("piece"))?;
    // piece < count, so start < size.
    Ok(start..size.min(start.saturating_add(METADATA_PIECE_LEN)))
}

/// The whole peer-message header of a `ut_metadata` data message for piece `piece` of an info
/// dictionary of `total_size` bytes, sent on extension id `ext_id`: length prefix, id 20,
/// `ext_id`, the bencoded dictionary. Write it, then the info dictionary's bytes in
/// [`metadata_piece_range`]`(total_size, piece)`.
pub fn encode_metadata_data_header(
    ext_id: u8,
    piece: u32,
    total_size: usize,
) -> Result<Vec<u8>, ExtensionError> {
    let range = metadata_piece_range(total_size, piece)?;
    let dict = data_dict(piece, total_size)?;
    let len = u32::try_from(2 + dict.len() + range.len())
        .map_err(|_| ExtensionError::Invalid("total_size"))?;
    let mut out = Vec::with_capacity(6 + dict.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(20);
    out.push(ext_id);
    out.extend_from_slice(&dict);
    Ok(out)
}

fn data_dict(piece: u32, total_size: usize) -> Result<Vec<u8>, ExtensionError> {
    let total = i64::try_from(total_size).map_err(|_| ExtensionError::Invalid("total_size"))?;
    let mut out = Vec::new();
    let mut w = DictWriter::new(&mut out);
    w.int(b"msg_type", DATA)
        .int(b"piece", i64::from(piece))
        .int(b"total_size", total);
    w.finish();
    Ok(out)
}

impl MetadataMsg {
    /// Decodes an `extended` payload, copying a data message's bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, ExtensionError> {
        Self::decode(payload)
    }

    /// Like [`MetadataMsg::parse`], but a data message's bytes share `payload`'s memory.
    pub fn parse_bytes(payload: &Bytes) -> Result<Self, ExtensionError> {
        Self::decode(payload.clone())
    }

    fn decode<S: Source>(payload: S) -> Result<Self, ExtensionError> {
        let (value, used) = seedbucket_bencode::decode_prefix(payload.as_ref())?;
        let d = dict(value)?;
        let int = |key: &'static str| match d.get(key.as_bytes()) {
            Some(Value::Int(n)) => Ok(*n),
            Some(_) => Err(ExtensionError::Invalid(key)),
            None => Err(ExtensionError::Missing(key)),
        };
        let msg_type = int("msg_type")?;
        if !(REQUEST..=REJECT).contains(&msg_type) {
            return Ok(Self::Unknown { msg_type });
        }
        let piece = u32::try_from(int("piece")?).map_err(|_| ExtensionError::Invalid("piece"))?;
        let trailing = payload.as_ref().len() - used.min(payload.as_ref().len());
        match msg_type {
            DATA => {
                let total_size = usize::try_from(int("total_size")?)
                    .map_err(|_| ExtensionError::Invalid("total_size"))?;
                let range = metadata_piece_range(total_size, piece)?;
                if trailing != range.len() {
                    return Err(ExtensionError::Invalid("data length"));
                }
                Ok(Self::Data {
                    piece,
                    total_size,
                    data: payload.tail(used),
                })
            }
            _ if trailing != 0 => Err(ExtensionError::Invalid("trailing bytes")),
            REQUEST => Ok(Self::Request { piece }),
            _ => Ok(Self::Reject { piece }),
        }
    }

    /// Appends the payload (dictionary, then data for a data message) to `out`. Errors for a
    /// data message whose bytes do not match its piece and `total_size`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ExtensionError> {
        let (msg_type, piece) = match self {
            Self::Data {
                piece,
                total_size,
                data,
            } => {
                if metadata_piece_range(*total_size, *piece)?.len() != data.len() {
                    return Err(ExtensionError::Invalid("data length"));
                }
                out.extend_from_slice(&data_dict(*piece, *total_size)?);
                out.extend_from_slice(data);
                return Ok(());
            }
            Self::Request { piece } => (REQUEST, Some(*piece)),
            Self::Reject { piece } => (REJECT, Some(*piece)),
            Self::Unknown { msg_type } => (*msg_type, None),
        };
        let mut w = DictWriter::new(out);
        w.int(b"msg_type", msg_type);
        if let Some(p) = piece {
            w.int(b"piece", i64::from(p));
        }
        w.finish();
        Ok(())
    }

    /// This message as an `extended` peer message on extension id `ext_id`.
    pub fn to_message(&self, ext_id: u8) -> Result<Message, ExtensionError> {
        let mut payload = Vec::new();
        self.encode(&mut payload)?;
        Ok(Message::Extended {
            id: ext_id,
            payload: Bytes::from(payload),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(m: &MetadataMsg) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v).unwrap();
        v
    }

    #[test]
    fn piece_geometry() {
        assert!(metadata_piece_count(0).is_err());
        assert_eq!(metadata_piece_count(1), Ok(1));
        assert_eq!(metadata_piece_count(16384), Ok(1));
        assert_eq!(metadata_piece_count(16385), Ok(2));
        assert_eq!(metadata_piece_range(1, 0), Ok(0..1));
        assert_eq!(metadata_piece_range(16384, 0), Ok(0..16384));
        assert!(metadata_piece_range(16384, 1).is_err());
        assert_eq!(metadata_piece_range(40000, 1), Ok(16384..32768));
        assert_eq!(metadata_piece_range(40000, 2), Ok(32768..40000));
        assert!(metadata_piece_range(40000, 3).is_err());
        assert!(metadata_piece_range(0, 0).is_err());
        assert!(metadata_piece_count(usize::MAX).is_err());
        let most = METADATA_PIECE_LEN * u32::MAX as usize;
        assert_eq!(metadata_piece_count(most), Ok(u32::MAX));
        assert_eq!(
            metadata_piece_range(most, u32::MAX - 1).map(|r| r.len()),
            Ok(METADATA_PIECE_LEN)
        );
    }

    #[test]
    fn exact_encodings() {
        assert_eq!(
            enc(&MetadataMsg::Request { piece: 0 }),
            b"d8:msg_typei0e5:piecei0ee"
        );
        assert_eq!(
            enc(&MetadataMsg::Reject { piece: 2 }),
            b"d8:msg_typei2e5:piecei2ee"
        );
        assert_eq!(
            enc(&MetadataMsg::Data {
                piece: 0,
                total_size: 3,
                data: Bytes::from_static(b"abc"),
            }),
            b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc"
        );
    }

    #[test]
    fn round_trips() {
        let info: Vec<u8> = (0..40000u32).map(|i| i as u8).collect();
        let mut msgs = vec![
            MetadataMsg::Request { piece: 7 },
            MetadataMsg::Reject { piece: u32::MAX },
            MetadataMsg::Unknown { msg_type: 9 },
        ];
        for piece in 0..3 {
            let r = metadata_piece_range(info.len(), piece).unwrap();
            msgs.push(MetadataMsg::Data {
                piece,
                total_size: info.len(),
                data: Bytes::copy_from_slice(&info[r]),
            });
        }
        for m in msgs {
            let b = enc(&m);
            assert_eq!(MetadataMsg::parse(&b), Ok(m.clone()));
            assert_eq!(MetadataMsg::parse_bytes(&Bytes::from(b)), Ok(m));
        }
    }

    #[test]
    fn data_header_matches_message() {
        let info = vec![b'x'; 20000];
        let m = MetadataMsg::Data {
            piece: 1,
            total_size: info.len(),
            data: Bytes::copy_from_slice(&info[16384..]),
        };
        let whole = m.to_message(3).unwrap().to_vec().unwrap();
        let mut split = encode_metadata_data_header(3, 1, info.len()).unwrap();
        split.extend_from_slice(&info[metadata_piece_range(info.len(), 1).unwrap()]);
        assert_eq!(split, whole);
        assert!(encode_metadata_data_header(3, 2, info.len()).is_err());
        assert!(encode_metadata_data_header(3, 0, 0).is_err());
    }

    #[test]
    fn malformed() {
        let bad: [&[u8]; 14] = [
            b"",
            b"le",
            b"i1e",
            b"d5:piecei0ee",
            b"d8:msg_type1:0e",
            b"d8:msg_typei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei0e5:piecei4294967296ee",
            b"d8:msg_typei0e5:piece1:0e",
            b"d8:msg_typei0e5:piecei0eeX",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_typei1e5:piecei0e10:total_sizei3eeab",
            b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabcd",
            b"d8:msg_typei1e5:piecei1e10:total_sizei3eeabc",
        ];
        for b in bad {
            assert!(
                MetadataMsg::parse(b).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert!(MetadataMsg::parse(b"d8:msg_typei1e5:piecei0e10:total_sizei0ee").is_err());
        assert!(MetadataMsg::parse(b"d8:msg_typei1e5:piecei0e10:total_sizei-3eeabc").is_err());
        // Unknown keys are fine; unknown types are reported, not refused.
        assert_eq!(
            MetadataMsg::parse(b"d8:msg_typei0e5:piecei1e4:zzzz0:e"),
            Ok(MetadataMsg::Request { piece: 1 })
        );
        assert_eq!(
            MetadataMsg::parse(b"d8:msg_typei-4ee"),
            Ok(MetadataMsg::Unknown { msg_type: -4 })
        );
        let wrong = MetadataMsg::Data {
            piece: 0,
            total_size: 5,
            data: Bytes::from_static(b"abc"),
        };
        assert!(wrong.encode(&mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let a = MetadataMsg::parse(&b);
            prop_assert_eq!(a, MetadataMsg::parse_bytes(&Bytes::from(b)));
        }

        #[test]
        fn data_round_trips(size in 1usize..100_000, pick in any::<u32>()) {
            let count = metadata_piece_count(size).unwrap();
            let piece = pick % count;
            let r = metadata_piece_range(size, piece).unwrap();
            prop_assert!(!r.is_empty() && r.len() <= METADATA_PIECE_LEN && r.end <= size);
            let m = MetadataMsg::Data { piece, total_size: size, data: Bytes::from(vec![1; r.len()]) };
            prop_assert_eq!(MetadataMsg::parse(&enc(&m)), Ok(m));
        }
    }
}
