//! Piece bitfields (BEP 3 `bitfield` message): bit 7 of byte 0 is piece 0.

use bytes::Bytes;

use super::{Message, PeerError};

/// Which pieces of a torrent a peer has, for a known piece count.
///
/// Always `ceil(pieces / 8)` bytes with the spare bits of the last byte clear, so
/// [`Bitfield::as_bytes`] is a valid `bitfield` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    pieces: u32,
}

fn byte_len(pieces: u32) -> usize {
    usize::try_from(pieces.div_ceil(8)).unwrap_or(usize::MAX)
}

/// Unused bits at the end of the last byte.
fn spare_bits(pieces: u32) -> u32 {
    (8 - pieces % 8) % 8
}

/// The byte holding piece `index` and the mask of its bit.
fn position(index: u32) -> (usize, u8) {
    let byte = usize::try_from(index / 8).unwrap_or(usize::MAX);
    (byte, 0x80 >> (index % 8))
}

impl Bitfield {
    /// No pieces.
    pub fn empty(pieces: u32) -> Self {
        Self {
            bytes: vec![0; byte_len(pieces)],
            pieces,
        }
    }

    /// Every piece: what a seeder sends.
    pub fn full(pieces: u32) -> Self {
        let mut bytes = vec![0xFF; byte_len(pieces)];
        let spare = spare_bits(pieces);
        if let Some(last) = bytes.last_mut() {
            *last &= 0xFF << spare;
        }
        Self { bytes, pieces }
    }

    /// Checks a peer's `bitfield` payload for a torrent of `pieces` pieces: exactly
    /// `ceil(pieces / 8)` bytes and no spare bit set.
    pub fn from_peer(payload: &[u8], pieces: u32) -> Result<Self, PeerError> {
        let expected = byte_len(pieces);
        if payload.len() != expected {
            return Err(PeerError::BitfieldLength {
                expected,
                got: payload.len(),
            });
        }
        let spare = spare_bits(pieces);
        if let Some(last) = payload.last()
            && last & !(0xFF << spare) != 0
        {
            return Err(PeerError::SpareBits);
        }
        Ok(Self {
            bytes: payload.to_vec(),
            pieces,
        })
    }

    /// The piece count.
    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// Whether piece `index` is set (false past the end).
    pub fn has(&self, index: u32) -> bool {
        let (byte, mask) = position(index);
        index < self.pieces && self.bytes.get(byte).is_some_and(|b| b & mask != 0)
    }

    /// Sets piece `index`; returns false (and changes nothing) past the end.
    pub fn set(&mut self, index: u32) -> bool {
        let (byte, mask) = position(index);
        match self.bytes.get_mut(byte) {
            Some(b) if index < self.pieces => {
                *b |= mask;
                true
            }
            _ => false,
        }
    }

    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every piece is set.
    pub fn is_full(&self) -> bool {
        self.count() == self.pieces
    }

    /// The wire payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A `bitfield` message carrying this bitfield.
    pub fn to_message(&self) -> Message {
        Message::Bitfield(Bytes::copy_from_slice(&self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_and_empty() {
        assert_eq!(Bitfield::full(0).as_bytes(), b"");
        assert_eq!(Bitfield::full(1).as_bytes(), [0x80]);
        assert_eq!(Bitfield::full(8).as_bytes(), [0xFF]);
        assert_eq!(Bitfield::full(9).as_bytes(), [0xFF, 0x80]);
        assert_eq!(Bitfield::full(15).as_bytes(), [0xFF, 0xFE]);
        assert_eq!(Bitfield::empty(9).as_bytes(), [0, 0]);
        let f = Bitfield::full(13);
        assert!(f.is_full() && f.has(0) && f.has(12) && !f.has(13));
        assert_eq!(f.count(), 13);
        assert_eq!(f.pieces(), 13);
        assert_eq!(
            f.to_message(),
            Message::Bitfield(Bytes::from_static(&[0xFF, 0xF8]))
        );
    }

    #[test]
    fn set_and_has() {
        let mut b = Bitfield::empty(10);
        assert!(b.set(0) && b.set(9));
        assert!(!b.set(10) && !b.set(u32::MAX));
        assert_eq!(b.as_bytes(), [0x80, 0x40]);
        assert!(b.has(0) && b.has(9) && !b.has(1) && !b.has(10));
        assert_eq!(b.count(), 2);
        assert!(!b.is_full());
    }

    #[test]
    fn from_peer_checks() {
        assert_eq!(
            Bitfield::from_peer(&[0xFF, 0xC0], 10),
            Ok(Bitfield::full(10))
        );
        assert_eq!(
            Bitfield::from_peer(&[0xFF], 10),
            Err(PeerError::BitfieldLength {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            Bitfield::from_peer(&[0xFF, 0xC0, 0], 10),
            Err(PeerError::BitfieldLength {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            Bitfield::from_peer(&[0xFF, 0xE0], 10),
            Err(PeerError::SpareBits)
        );
        assert_eq!(Bitfield::from_peer(&[0x01], 7), Err(PeerError::SpareBits));
        assert!(Bitfield::from_peer(&[0xFF], 8).is_ok());
        assert!(Bitfield::from_peer(&[], 0).is_ok());
        assert_eq!(spare_bits(u32::MAX), 1);
        assert_eq!(
            Bitfield::from_peer(&[], u32::MAX),
            Err(PeerError::BitfieldLength {
                expected: 536_870_912,
                got: 0
            })
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..40), pieces in 0u32..400) {
            if let Ok(f) = Bitfield::from_peer(&b, pieces) {
                prop_assert_eq!(f.as_bytes(), &b[..]);
                prop_assert!(f.count() <= pieces);
            }
        }

        #[test]
        fn full_round_trips(pieces in 0u32..5000) {
            let f = Bitfield::full(pieces);
            prop_assert_eq!(f.count(), pieces);
            prop_assert_eq!(Bitfield::from_peer(f.as_bytes(), pieces), Ok(f));
        }
    }
}
