//! Torrent maths for single-file torrents, no IO.
//!
//! Where it sits: the store feeds every PUT body through a [`PieceHasher`] while writing it and
//! keeps the resulting [`PieceHashes`]; GetObjectTorrent turns them into an `info` dictionary
//! ([`build_info`], v1 / hybrid / v2) and a metainfo file ([`build_torrent`]); the tracker and
//! seeder key on [`InfoHashes`]. References: BEP 3 (v1), BEP 52 (v2), BEP 9 (magnet),
//! BEP 19 (webseeds), BEP 27 (private).

mod hasher;
mod metainfo;

pub use hasher::{BLOCK, PieceHasher, PieceHashes, merkle_root, piece_layer};
pub use metainfo::{
    Format, InfoHashes, Outer, ParseError, ParsedTorrent, build_info, build_torrent, magnet_uri,
    parse_torrent,
};

/// The piece length for an object of `size` bytes: the smallest power of two of at least
/// 16 KiB that makes at most 2000 pieces. So small objects get 16 KiB pieces, a 1 GiB object
/// 1 MiB pieces (1024), a 5 GiB object 4 MiB pieces (1280); anything between 1000 and 2000
/// pieces for objects over 32 MiB. BEP 52 requires a power of two of at least 16 KiB.
pub fn piece_length_for(size: u64) -> u64 {
    const MAX_PIECES: u64 = 2000;
    let mut p: u64 = BLOCK as u64;
    while size.div_ceil(p) > MAX_PIECES && p < (1 << 40) {
        p <<= 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_rule() {
        assert_eq!(piece_length_for(0), 16 * 1024);
        assert_eq!(piece_length_for(1), 16 * 1024);
        assert_eq!(piece_length_for(16 * 1024 * 2000), 16 * 1024);
        assert_eq!(piece_length_for(16 * 1024 * 2000 + 1), 32 * 1024);
        assert_eq!(piece_length_for(1 << 30), 1 << 20);
        assert_eq!(piece_length_for(5 << 30), 4 << 20);
        for size in [1u64 << 26, 3 << 28, 5 << 30, 1 << 40] {
            let n = size.div_ceil(piece_length_for(size));
            assert!((1000..=2000).contains(&n), "{size}: {n} pieces");
        }
    }
}
