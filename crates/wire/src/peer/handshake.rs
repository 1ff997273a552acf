//! The BEP 3 handshake: `19`, `"BitTorrent protocol"`, 8 reserved bytes, info-hash, peer id.

use super::PeerError;

/// The protocol string every handshake starts with (after its length byte, 19).
pub const PSTR: &[u8; 19] = b"BitTorrent protocol";
/// Bytes in a full handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Bytes up to and including the info-hash: enough to pick the torrent before the peer id.
pub const HANDSHAKE_PREFIX_LEN: usize = 48;

/// The 8 reserved bytes of the handshake, with typed access to the extension bits we use.
///
/// Unknown bits are kept as received, so a peer's reserved bytes can be inspected in full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// No extension bits set.
    pub const NONE: Self = Self([0; 8]);

    const fn bit(self, byte: usize, mask: u8) -> bool {
        self.0[byte] & mask != 0
    }

    const fn with_bit(mut self, byte: usize, mask: u8, on: bool) -> Self {
        if on {
            self.0[byte] |= mask;
        } else {
            self.0[byte] &= !mask;
        }
        self
    }

    /// BEP 5 DHT (`reserved[7] & 0x01`): the peer accepts `port` messages.
    pub const fn dht(self) -> bool {
        self.bit(7, 0x01)
    }

    /// BEP 6 fast extension (`reserved[7] & 0x04`).
    pub const fn fast(self) -> bool {
        self.bit(7, 0x04)
    }

    /// BEP 52 upgrade to v2 (`reserved[7] & 0x10`).
    pub const fn v2_upgrade(self) -> bool {
        self.bit(7, 0x10)
    }

    /// BEP 10 extension protocol (`reserved[5] & 0x10`).
    pub const fn extension_protocol(self) -> bool {
        self.bit(5, 0x10)
    }

    /// This value with the DHT bit set or cleared.
    pub const fn with_dht(self, on: bool) -> Self {
        self.with_bit(7, 0x01, on)
    }

    /// This value with the BEP 6 fast-extension bit set or cleared.
    pub const fn with_fast(self, on: bool) -> Self {
        self.with_bit(7, 0x04, on)
    }

    /// This value with the BEP 52 v2-upgrade bit set or cleared.
    pub const fn with_v2_upgrade(self, on: bool) -> Self {
        self.with_bit(7, 0x10, on)
    }

    /// This value with the BEP 10 extension-protocol bit set or cleared.
    pub const fn with_extension_protocol(self, on: bool) -> Self {
        self.with_bit(5, 0x10, on)
    }
}

/// The first 48 bytes of a handshake: what a listener needs to find the torrent (some clients
/// send their peer id only after seeing ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePrefix {
    pub reserved: Reserved,
    pub info_hash: [u8; 20],
}

/// A full BEP 3 handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: Reserved,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

/// Checks the bytes present so far against `19 "BitTorrent protocol"`, so a wrong protocol is
/// refused from its first byte rather than after 68.
fn check_pstr(buf: &[u8]) -> Result<(), PeerError> {
    let expected = std::iter::once(19u8).chain(PSTR.iter().copied());
    if buf.iter().zip(expected).all(|(a, b)| *a == b) {
        Ok(())
    } else {
        Err(PeerError::BadProtocol)
    }
}

fn array<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], PeerError> {
    buf.get(at..)
        .and_then(<[u8]>::first_chunk::<N>)
        .copied()
        .ok_or(PeerError::BadProtocol)
}

impl HandshakePrefix {
    /// Parses the first 48 bytes of a handshake. `Ok(None)`: fewer than 48 bytes so far, and
    /// those agree with the protocol string.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, PeerError> {
        check_pstr(buf)?;
        if buf.len() < HANDSHAKE_PREFIX_LEN {
            return Ok(None);
        }
        let prefix = Self {
            reserved: Reserved(array(buf, 20)?),
            info_hash: array(buf, 28)?,
        };
        Ok(Some((prefix, HANDSHAKE_PREFIX_LEN)))
    }

    /// The full handshake once the peer id is known.
    pub const fn with_peer_id(self, peer_id: [u8; 20]) -> Handshake {
        Handshake {
            reserved: self.reserved,
            info_hash: self.info_hash,
            peer_id,
        }
    }
}

impl Handshake {
    /// Parses a full 68-byte handshake (the same buffer [`HandshakePrefix::parse`] looked at,
    /// once more bytes arrived). `Ok(None)`: incomplete but valid so far.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, PeerError> {
        let Some((prefix, _)) = HandshakePrefix::parse(buf)? else {
            return Ok(None);
        };
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        Ok(Some((prefix.with_peer_id(array(buf, 48)?), HANDSHAKE_LEN)))
    }

    /// The first 48 bytes' fields.
    pub const fn prefix(&self) -> HandshakePrefix {
        HandshakePrefix {
            reserved: self.reserved,
            info_hash: self.info_hash,
        }
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PSTR);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Handshake {
        Handshake {
            reserved: Reserved::NONE
                .with_fast(true)
                .with_extension_protocol(true)
                .with_v2_upgrade(true),
            info_hash: [0xAB; 20],
            peer_id: *b"-SB0001-abcdefghijkl",
        }
    }

    #[test]
    fn layout() {
        let h = sample();
        let b = h.encode();
        assert_eq!(b[0], 19);
        assert_eq!(&b[1..20], PSTR);
        assert_eq!(b[20..28], [0, 0, 0, 0, 0, 0x10, 0, 0x14]);
        assert_eq!(b[28..48], [0xAB; 20]);
        assert_eq!(&b[48..], b"-SB0001-abcdefghijkl");
    }

    #[test]
    fn reserved_bits() {
        let r = Reserved::NONE;
        assert!(!r.dht() && !r.fast() && !r.v2_upgrade() && !r.extension_protocol());
        assert_eq!(r.with_dht(true).0, [0, 0, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(r.with_fast(true).0, [0, 0, 0, 0, 0, 0, 0, 0x04]);
        assert_eq!(r.with_v2_upgrade(true).0, [0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(
            r.with_extension_protocol(true).0,
            [0, 0, 0, 0, 0, 0x10, 0, 0]
        );
        let all = Reserved([0xFF; 8]);
        assert!(all.dht() && all.fast() && all.v2_upgrade() && all.extension_protocol());
        assert_eq!(all.with_fast(false).0[7], 0xFB);
        assert_eq!(all.with_extension_protocol(false).0[5], 0xEF);
    }

    #[test]
    fn round_trip_and_prefix() {
        let h = sample();
        let b = h.encode();
        assert_eq!(Handshake::parse(&b), Ok(Some((h, 68))));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(Handshake::parse(&longer), Ok(Some((h, 68))));
        for n in 0..48 {
            assert_eq!(HandshakePrefix::parse(&b[..n]), Ok(None), "{n}");
        }
        for n in 0..68 {
            assert_eq!(Handshake::parse(&b[..n]), Ok(None), "{n}");
        }
        for n in 48..=68 {
            assert_eq!(HandshakePrefix::parse(&b[..n]), Ok(Some((h.prefix(), 48))));
        }
        assert_eq!(h.prefix().with_peer_id(h.peer_id), h);
    }

    #[test]
    fn wrong_protocol_fails_early() {
        assert_eq!(Handshake::parse(&[18]), Err(PeerError::BadProtocol));
        assert_eq!(
            HandshakePrefix::parse(&[19, b'b']),
            Err(PeerError::BadProtocol)
        );
        let mut b = sample().encode();
        b[19] = b'L';
        assert_eq!(Handshake::parse(&b), Err(PeerError::BadProtocol));
        assert_eq!(Handshake::parse(&b[..20]), Err(PeerError::BadProtocol));
        assert_eq!(Handshake::parse(&b[..19]), Ok(None));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Handshake::parse(&b);
            let _ = HandshakePrefix::parse(&b);
        }

        #[test]
        fn round_trips(r in any::<[u8; 8]>(), ih in any::<[u8; 20]>(), id in any::<[u8; 20]>()) {
            let h = Handshake { reserved: Reserved(r), info_hash: ih, peer_id: id };
            prop_assert_eq!(Handshake::parse(&h.encode()), Ok(Some((h, HANDSHAKE_LEN))));
        }
    }
}
