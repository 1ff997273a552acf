//! Validating a peer's block request (BEP 3 `request`) against the torrent's geometry.

/// Largest block a peer may request: 16 KiB, what every current client asks for.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024;

/// Why a block request cannot be served. The seeder answers with a BEP 6 `reject` (or drops
/// the peer); none of these is worth reading the store for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The torrent's piece length is zero (a caller bug, not a peer's).
    #[error("piece length is zero")]
    ZeroPieceLength,
    /// A request for zero bytes.
    #[error("empty block request")]
    Empty,
    /// A request above [`MAX_BLOCK_LEN`].
    #[error("block of {0} bytes exceeds {MAX_BLOCK_LEN}")]
    TooLong(u32),
    /// A piece index past the end of the torrent.
    #[error("no piece {0}")]
    NoSuchPiece(u32),
    /// A range that runs past the end of its piece.
    #[error("bytes {begin}..{begin}+{len} are outside piece {index}")]
    OutsidePiece { index: u32, begin: u32, len: u32 },
}

/// The absolute byte offset in the torrent's data of block (`index`, `begin`, `len`), for data
/// of `total_len` bytes cut into pieces of `piece_len` (the last piece may be shorter).
///
/// Valid when `index` names a piece, `0 < len <= MAX_BLOCK_LEN`, and `begin + len` stays within
/// that piece. All arithmetic is checked, so any `u32` triple is safe to pass.
pub fn block_offset(
    total_len: u64,
    piece_len: u64,
    index: u32,
    begin: u32,
    len: u32,
) -> Result<u64, BlockError> {
    if piece_len == 0 {
        return Err(BlockError::ZeroPieceLength);
    }
    if len == 0 {
        return Err(BlockError::Empty);
    }
    if len > MAX_BLOCK_LEN {
        return Err(BlockError::TooLong(len));
    }
    let start = u64::from(index)
        .checked_mul(piece_len)
        .filter(|s| *s < total_len)
        .ok_or(BlockError::NoSuchPiece(index))?;
    let this_piece = piece_len.min(total_len - start);
    // Two u32s summed in a u64 cannot overflow.
    if u64::from(begin) + u64::from(len) > this_piece {
        return Err(BlockError::OutsidePiece { index, begin, len });
    }
    // start + begin < start + this_piece <= total_len.
    Ok(start + u64::from(begin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PIECE: u64 = 256 * 1024;

    #[test]
    fn valid_requests() {
        let total = 3 * PIECE + 1000;
        assert_eq!(block_offset(total, PIECE, 0, 0, 16384), Ok(0));
        assert_eq!(
            block_offset(total, PIECE, 1, 16384, 16384),
            Ok(PIECE + 16384)
        );
        assert_eq!(
            block_offset(total, PIECE, 2, 245_760, 16384),
            Ok(2 * PIECE + 245_760)
        );
        // The short last piece.
        assert_eq!(block_offset(total, PIECE, 3, 0, 1000), Ok(3 * PIECE));
        assert_eq!(block_offset(total, PIECE, 3, 999, 1), Ok(3 * PIECE + 999));
        // A small final block inside a full piece.
        assert_eq!(block_offset(total, PIECE, 0, 262_143, 1), Ok(262_143));
        // A single piece shorter than the piece length.
        assert_eq!(block_offset(10, PIECE, 0, 0, 10), Ok(0));
    }

    #[test]
    fn invalid_requests() {
        let total = 3 * PIECE + 1000;
        assert_eq!(
            block_offset(total, 0, 0, 0, 1),
            Err(BlockError::ZeroPieceLength)
        );
        assert_eq!(block_offset(total, PIECE, 0, 0, 0), Err(BlockError::Empty));
        assert_eq!(
            block_offset(total, PIECE, 0, 0, 16385),
            Err(BlockError::TooLong(16385))
        );
        assert_eq!(
            block_offset(total, PIECE, 4, 0, 1),
            Err(BlockError::NoSuchPiece(4))
        );
        assert_eq!(
            block_offset(total, PIECE, u32::MAX, 0, 1),
            Err(BlockError::NoSuchPiece(u32::MAX))
        );
        assert_eq!(
            block_offset(3 * PIECE, PIECE, 3, 0, 1),
            Err(BlockError::NoSuchPiece(3))
        );
        assert_eq!(
            block_offset(0, PIECE, 0, 0, 1),
            Err(BlockError::NoSuchPiece(0))
        );
        assert_eq!(
            block_offset(total, PIECE, 3, 999, 2),
            Err(BlockError::OutsidePiece {
                index: 3,
                begin: 999,
                len: 2
            })
        );
        assert_eq!(
            block_offset(total, PIECE, 0, 262_143, 2),
            Err(BlockError::OutsidePiece {
                index: 0,
                begin: 262_143,
                len: 2
            })
        );
        assert!(block_offset(total, PIECE, 0, u32::MAX, 16384).is_err());
        // Huge geometry: index * piece_len overflows u64.
        assert_eq!(
            block_offset(u64::MAX, u64::MAX / 2, 3, 0, 1),
            Err(BlockError::NoSuchPiece(3))
        );
        assert_eq!(
            block_offset(u64::MAX, u64::MAX / 2, 2, 0, 1),
            Ok(u64::MAX - 1)
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_inside(
            total in any::<u64>(),
            piece in any::<u64>(),
            index in any::<u32>(),
            begin in any::<u32>(),
            len in any::<u32>(),
        ) {
            if let Ok(off) = block_offset(total, piece, index, begin, len) {
                prop_assert!(off.checked_add(u64::from(len)).is_some_and(|end| end <= total));
                prop_assert!(len > 0 && len <= MAX_BLOCK_LEN);
            }
        }

        #[test]
        fn every_block_of_a_torrent_is_valid(total in 1u64..2_000_000, shift in 14u32..20) {
            let piece = 1u64 << shift;
            let pieces = u32::try_from(total.div_ceil(piece)).unwrap();
            let mut next = 0u64;
            for index in 0..pieces {
                let this = piece.min(total - u64::from(index) * piece);
                let mut begin = 0u64;
                while begin < this {
                    let len = (this - begin).min(u64::from(MAX_BLOCK_LEN));
                    let off = block_offset(
                        total,
                        piece,
                        index,
                        u32::try_from(begin).unwrap(),
                        u32::try_from(len).unwrap(),
                    );
                    prop_assert_eq!(off, Ok(next));
                    next += len;
                    begin += len;
                }
            }
            prop_assert_eq!(next, total);
            prop_assert_eq!(block_offset(total, piece, pieces, 0, 1), Err(BlockError::NoSuchPiece(pieces)));
        }
    }
}
