//! UDP tracker protocol (BEP 15), with BEP 41 URL data (how a private torrent's token arrives).
//!
//! Parsing is strict about lengths and never panics; replies are built into byte vectors.
//! Connection ids are the server's business (see the server's keyed MAC); this module only
//! carries them.

use std::net::{IpAddr, SocketAddr};

use super::http::{Event, ScrapeEntry};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info-hashes in one scrape (BEP 15).
pub const MAX_SCRAPE: usize = 74;
/// Largest datagram accepted.
pub const MAX_PACKET: usize = 2048;

const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect {
        transaction_id: u32,
    },
    Announce(UdpAnnounce),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<[u8; 20]>,
    },
}

/// A UDP announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpAnnounce {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    pub key: u32,
    /// `None` for the default (-1).
    pub numwant: Option<u32>,
    pub port: u16,
    /// BEP 41 URL data (path and query of the announce URL), if the client sent any.
    pub url_data: Vec<u8>,
}

/// Why a datagram is refused. Answered with an error packet when the transaction id is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet too short")]
    TooShort,
    #[error("packet too long")]
    TooLong,
    #[error("bad protocol id")]
    BadProtocol,
    #[error("unknown action {0}")]
    UnknownAction(u32),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.0.len() < n {
            return Err(PacketError::TooShort);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PacketError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PacketError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn twenty(&mut self) -> Result<[u8; 20], PacketError> {
        let b = self.take(20)?;
        let mut a = [0u8; 20];
        a.copy_from_slice(b);
        Ok(a)
    }
}

/// The transaction id of a packet, if it is long enough to have one (for error replies).
pub fn transaction_id(packet: &[u8]) -> Option<u32> {
    let b = packet.get(12..16)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses one datagram.
pub fn parse_request(packet: &[u8]) -> Result<Request, PacketError> {
    if packet.len() > MAX_PACKET {
        return Err(PacketError::TooLong);
    }
    let mut c = Cursor(packet);
    let connection_id = c.u64()?;
    let action = c.u32()?;
    let transaction_id = c.u32()?;
    match action {
        CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(PacketError::BadProtocol);
            }
            Ok(Request::Connect { transaction_id })
        }
        ANNOUNCE => {
            let info_hash = c.twenty()?;
            let peer_id = c.twenty()?;
            let downloaded = c.u64()?;
            let left = c.u64()?;
            let uploaded = c.u64()?;
            let event = match c.u32()? {
                0 => Event::None,
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => return Err(PacketError::Invalid("event")),
            };
            let _ip = c.u32()?; // never trusted: the datagram's source address counts
            let key = c.u32()?;
            let numwant = i32::from_be_bytes(c.u32()?.to_be_bytes());
            let port = c.u16()?;
            if port == 0 {
                return Err(PacketError::Invalid("port"));
            }
            let url_data = parse_options(c.0)?;
            Ok(Request::Announce(UdpAnnounce {
                connection_id,
                transaction_id,
                info_hash,
                peer_id,
                downloaded,
                left,
                uploaded,
                event,
                key,
                numwant: u32::try_from(numwant).ok(),
                port,
                url_data,
            }))
        }
        SCRAPE => {
            let rest = c.0;
            if rest.is_empty() || rest.len() % 20 != 0 || rest.len() / 20 > MAX_SCRAPE {
                return Err(PacketError::Invalid("info_hash list"));
            }
            let info_hashes = rest.chunks_exact(20).map(|h| {
                let mut a = [0u8; 20];
                a.copy_from_slice(h);
                a
            });
            Ok(Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes: info_hashes.collect(),
            })
        }
        other => Err(PacketError::UnknownAction(other)),
    }
}

/// BEP 41 options: 0 = end, 1 = no-op, 2 = URL data (length byte, bytes; concatenated).
fn parse_options(mut rest: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut url = Vec::new();
    while let Some((&kind, tail)) = rest.split_first() {
        match kind {
            0 => break,
            1 => rest = tail,
            2 => {
                let (&len, tail) = tail.split_first().ok_or(PacketError::Invalid("option"))?;
                let len = usize::from(len);
                let data = tail
                    .get(..len)
                    .ok_or(PacketError::Invalid("option length"))?;
                url.extend_from_slice(data);
                rest = &tail[len..];
            }
            _ => return Err(PacketError::Invalid("option type")),
        }
    }
    Ok(url)
}

pub fn connect_reply(transaction_id: u32, connection_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out
}

/// Peers of the requester's address family only (BEP 15: 6-byte IPv4 or 18-byte IPv6 entries).
pub fn announce_reply(
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: impl IntoIterator<Item = SocketAddr>,
    v6: bool,
) -> Vec<u8> {
    let peers = peers.into_iter();
    let mut reply = CompactAnnounceReply::new(transaction_id, v6, peers.size_hint().0);
    for p in peers {
        reply.push(p);
    }
    reply.finish(interval, leechers, seeders)
}

/// An announce reply written as its peers are picked (no list of them in between): the peers
/// go in as they come, the counts once known.
#[derive(Debug)]
pub struct CompactAnnounceReply {
    out: Vec<u8>,
    v6: bool,
    peers: usize,
}

impl CompactAnnounceReply {
    /// Room for `capacity` peers of the requester's family (`v6`).
    pub fn new(transaction_id: u32, v6: bool, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(20 + capacity * if v6 { 18 } else { 6 });
        out.extend_from_slice(&ANNOUNCE.to_be_bytes());
        out.extend_from_slice(&transaction_id.to_be_bytes());
        // interval, leechers, seeders: filled in by `finish`
        out.extend_from_slice(&[0; 12]);
        Self { out, v6, peers: 0 }
    }

    /// Adds `peer` if it is of the requester's address family; false if left out.
    pub fn push(&mut self, peer: SocketAddr) -> bool {
        let [hi, lo] = peer.port().to_be_bytes();
        match (peer.ip(), self.v6) {
            (IpAddr::V4(ip), false) => {
                let [a, b, c, d] = ip.octets();
                self.out.extend_from_slice(&[a, b, c, d, hi, lo]);
            }
            (IpAddr::V6(ip), true) => {
                self.out.extend_from_slice(&ip.octets());
                self.out.extend_from_slice(&[hi, lo]);
            }
            _ => return false,
        }
        self.peers += 1;
        true
    }

    /// Peers added so far.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// The datagram.
    pub fn finish(mut self, interval: u32, leechers: u32, seeders: u32) -> Vec<u8> {
        self.out[8..12].copy_from_slice(&interval.to_be_bytes());
        self.out[12..16].copy_from_slice(&leechers.to_be_bytes());
        self.out[16..20].copy_from_slice(&seeders.to_be_bytes());
        self.out
    }
}

pub fn scrape_reply(transaction_id: u32, entries: &[ScrapeEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + entries.len() * 12);
    out.extend_from_slice(&SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.complete.to_be_bytes());
        out.extend_from_slice(&e.downloaded.to_be_bytes());
        out.extend_from_slice(&e.incomplete.to_be_bytes());
    }
    out
}

pub fn error_reply(transaction_id: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn announce_packet(extra: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&7u64.to_be_bytes());
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&[1; 20]);
        p.extend_from_slice(&[2; 20]);
        p.extend_from_slice(&5u64.to_be_bytes());
        p.extend_from_slice(&6u64.to_be_bytes());
        p.extend_from_slice(&7u64.to_be_bytes());
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(&(-1i32).to_be_bytes());
        p.extend_from_slice(&6881u16.to_be_bytes());
        p.extend_from_slice(extra);
        p
    }

    #[test]
    fn parses() {
        let mut c = PROTOCOL_ID.to_be_bytes().to_vec();
        c.extend_from_slice(&0u32.to_be_bytes());
        c.extend_from_slice(&42u32.to_be_bytes());
        assert_eq!(
            parse_request(&c),
            Ok(Request::Connect { transaction_id: 42 })
        );
        let Ok(Request::Announce(a)) = parse_request(&announce_packet(&[])) else {
            panic!()
        };
        assert_eq!(
            (
                a.connection_id,
                a.transaction_id,
                a.left,
                a.event,
                a.numwant,
                a.port
            ),
            (7, 9, 6, Event::Started, None, 6881)
        );
        let Ok(Request::Announce(a)) = parse_request(&announce_packet(&[
            2, 3, b'/', b'a', b'n', 1, 2, 2, b'?', b'x', 0,
        ])) else {
            panic!()
        };
        assert_eq!(a.url_data, b"/an?x");
        assert!(parse_request(&announce_packet(&[2, 9, b'x'])).is_err());
        assert!(parse_request(&announce_packet(&[])[..97]).is_err());
        let mut s = 7u64.to_be_bytes().to_vec();
        s.extend_from_slice(&2u32.to_be_bytes());
        s.extend_from_slice(&1u32.to_be_bytes());
        assert!(parse_request(&s).is_err());
        s.extend_from_slice(&[3; 40]);
        assert!(
            matches!(parse_request(&s), Ok(Request::Scrape { info_hashes, .. }) if info_hashes.len() == 2)
        );
        s.push(0);
        assert!(parse_request(&s).is_err());
    }

    #[test]
    fn replies() {
        let peers = ["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()];
        assert_eq!(announce_reply(1, 2, 3, 4, peers, false).len(), 20 + 6);
        assert_eq!(announce_reply(1, 2, 3, 4, peers, true).len(), 20 + 18);
        assert_eq!(connect_reply(1, 2).len(), 16);
        assert_eq!(scrape_reply(1, &[ScrapeEntry::default()]).len(), 20);
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&p);
            let _ = transaction_id(&p);
        }
    }
}
