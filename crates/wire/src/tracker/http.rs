//! HTTP tracker: the announce and scrape query strings, and their bencoded replies.
//!
//! `info_hash` and `peer_id` are percent-encoded binary, so the query is decoded by hand (a
//! generic form decoder would mangle `+` and non-UTF-8 bytes).

use std::net::{IpAddr, SocketAddr};

use percent_encoding::percent_decode;
use seedbucket_bencode::{DictWriter, write_bytes};

/// Longest query string accepted.
pub const MAX_QUERY: usize = 4096;
/// Most info-hashes one scrape may ask for.
pub const MAX_SCRAPE: usize = 64;

/// Why a request is refused; the text goes out as `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("invalid parameter {0}")]
    Invalid(&'static str),
    #[error("request too long")]
    TooLong,
}

/// BEP 3 `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Stopped,
    Completed,
}

/// A parsed announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: Option<u32>,
    pub compact: bool,
    pub key: Option<Vec<u8>>,
}

/// Decoded `(key, value)` pairs of a query string.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Form decoding: `+` is a space, `%XX` a byte (a literal `+` byte arrives as `%2B`).
fn form_decode(s: &str) -> Vec<u8> {
    let spaced: Vec<u8> = s
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
}

fn pairs(query: &str) -> Result<Pairs, RequestError> {
    if query.len() > MAX_QUERY {
        return Err(RequestError::TooLong);
    }
    Ok(query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect())
}

fn get<'a>(pairs: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn number<T: std::str::FromStr>(
    pairs: &[(Vec<u8>, Vec<u8>)],
    key: &'static str,
) -> Result<Option<T>, RequestError> {
    match get(pairs, key) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or(RequestError::Invalid(key)),
    }
}

fn twenty(pairs: &[(Vec<u8>, Vec<u8>)], key: &'static str) -> Result<[u8; 20], RequestError> {
    let v = get(pairs, key).ok_or(RequestError::Missing(key))?;
    <[u8; 20]>::try_from(v).map_err(|_| RequestError::Invalid(key))
}

/// Parses an announce query string.
pub fn parse_announce(query: &str) -> Result<Announce, RequestError> {
    let p = pairs(query)?;
    let port: u16 = number(&p, "port")?.ok_or(RequestError::Missing("port"))?;
    if port == 0 {
        return Err(RequestError::Invalid("port"));
    }
    let event = match get(&p, "event") {
        None | Some(b"") | Some(b"empty") => Event::None,
        Some(b"started") => Event::Started,
        Some(b"stopped") => Event::Stopped,
        Some(b"completed") => Event::Completed,
        Some(_) => return Err(RequestError::Invalid("event")),
    };
    Ok(Announce {
        info_hash: twenty(&p, "info_hash")?,
        peer_id: twenty(&p, "peer_id")?,
        port,
        uploaded: number(&p, "uploaded")?.unwrap_or(0),
        downloaded: number(&p, "downloaded")?.unwrap_or(0),
        left: number(&p, "left")?.ok_or(RequestError::Missing("left"))?,
        event,
        numwant: number::<i64>(&p, "numwant")?.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
        compact: get(&p, "compact") != Some(b"0"),
        key: get(&p, "key").map(<[u8]>::to_vec),
    })
}

/// Parses a scrape query: every `info_hash` parameter (none means "all", which we refuse).
pub fn parse_scrape(query: &str) -> Result<Vec<[u8; 20]>, RequestError> {
    let p = pairs(query)?;
    let mut out = Vec::new();
    for (k, v) in &p {
        if k == b"info_hash" {
            out.push(
                <[u8; 20]>::try_from(v.as_slice())
                    .map_err(|_| RequestError::Invalid("info_hash"))?,
            );
        }
    }
    if out.is_empty() {
        return Err(RequestError::Missing("info_hash"));
    }
    if out.len() > MAX_SCRAPE {
        return Err(RequestError::Invalid("info_hash (too many)"));
    }
    Ok(out)
}

/// An announce reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: u32,
    pub min_interval: u32,
    pub complete: u32,
    pub incomplete: u32,
    pub peers: Vec<(SocketAddr, [u8; 20])>,
    pub warning: Option<String>,
}

impl AnnounceReply {
    /// Bencodes the reply: compact peers (BEP 23, IPv4 in `peers`, IPv6 in `peers6`), or the
    /// dictionary form when the client asked `compact=0`.
    pub fn encode(&self, compact: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = DictWriter::new(&mut out);
        w.int(b"complete", i64::from(self.complete));
        w.int(b"incomplete", i64::from(self.incomplete));
        w.int(b"interval", i64::from(self.interval));
        w.int(b"min interval", i64::from(self.min_interval));
        if compact {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for (addr, _) in &self.peers {
                match addr.ip() {
                    IpAddr::V4(ip) => {
                        v4.extend_from_slice(&ip.octets());
                        v4.extend_from_slice(&addr.port().to_be_bytes());
                    }
                    IpAddr::V6(ip) => {
                        v6.extend_from_slice(&ip.octets());
                        v6.extend_from_slice(&addr.port().to_be_bytes());
                    }
                }
            }
            w.bytes(b"peers", &v4);
            if !v6.is_empty() {
                w.bytes(b"peers6", &v6);
            }
        } else {
            let mut list = vec![b'l'];
            for (addr, id) in &self.peers {
                let mut d = Vec::new();
                let mut pw = DictWriter::new(&mut d);
                pw.bytes(b"ip", addr.ip().to_string().as_bytes());
                pw.bytes(b"peer id", id);
                pw.int(b"port", i64::from(addr.port()));
                pw.finish();
                list.extend_from_slice(&d);
            }
            list.push(b'e');
            w.raw(b"peers", &list);
        }
        if let Some(msg) = &self.warning {
            w.bytes(b"warning message", msg.as_bytes());
        }
        w.finish();
        out
    }
}

/// Scrape counts of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeEntry {
    pub complete: u32,
    pub downloaded: u32,
    pub incomplete: u32,
}

/// Bencodes a scrape reply (`files` keyed by the raw info-hash, sorted).
pub fn encode_scrape(entries: &[([u8; 20], ScrapeEntry)]) -> Vec<u8> {
    let mut sorted: Vec<_> = entries.to_vec();
    sorted.sort_by_key(|e| e.0);
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut files = Vec::new();
    let mut fw = DictWriter::new(&mut files);
    for (hash, e) in &sorted {
        let mut d = Vec::new();
        let mut w = DictWriter::new(&mut d);
        w.int(b"complete", i64::from(e.complete));
        w.int(b"downloaded", i64::from(e.downloaded));
        w.int(b"incomplete", i64::from(e.incomplete));
        w.finish();
        fw.raw(hash, &d);
    }
    fw.finish();
    let mut out = Vec::new();
    let mut w = DictWriter::new(&mut out);
    w.raw(b"files", &files);
    w.finish();
    out
}

/// A `failure reason` reply.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = b"d14:failure reason".to_vec();
    write_bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";

    #[test]
    fn announce_parses() {
        let q = format!(
            "info_hash={IH}&peer_id=-AB1234-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&event=started&numwant=999999&compact=1&key=k"
        );
        let a = parse_announce(&q).unwrap();
        assert_eq!(a.info_hash[0], 0x12);
        assert_eq!(a.port, 6881);
        assert_eq!((a.uploaded, a.downloaded, a.left), (1, 2, 3));
        assert_eq!(a.event, Event::Started);
        assert_eq!(a.numwant, Some(999_999));
        assert!(a.compact);
    }

    #[test]
    fn announce_rejects_bad_shapes() {
        let ok = format!("info_hash={IH}&peer_id=-AB1234-abcdefghijkl&port=6881&left=0");
        assert!(parse_announce(&ok).is_ok());
        for bad in [
            ok.replace("port=6881", "port=0"),
            ok.replace("port=6881", "port=70000"),
            ok.replace("port=6881&", ""),
            ok.replace("&left=0", ""),
            ok.replace("left=0", "left=-1"),
            ok.replace(IH, "%12%34"),            // 2 bytes
            ok.replace(IH, &format!("{IH}%00")), // 21 bytes
            ok.replace("-AB1234-abcdefghijkl", "short"),
            format!("{ok}&event=bogus"),
            "x".repeat(MAX_QUERY + 1),
        ] {
            assert!(parse_announce(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_canonical() {
        let r = AnnounceReply {
            interval: 1800,
            min_interval: 60,
            complete: 1,
            incomplete: 2,
            peers: vec![
                ("127.0.0.1:6881".parse().unwrap(), [b'a'; 20]),
                ("[::1]:7000".parse().unwrap(), [b'b'; 20]),
            ],
            warning: None,
        };
        let enc = r.encode(true);
        let v = seedbucket_bencode::decode(&enc).unwrap();
        assert_eq!(seedbucket_bencode::encode(&v), enc);
        assert!(enc.windows(6).any(|w| w == [127, 0, 0, 1, 0x1a, 0xe1]));
        let full = r.encode(false);
        assert_eq!(
            seedbucket_bencode::encode(&seedbucket_bencode::decode(&full).unwrap()),
            full
        );
        let s = encode_scrape(&[
            (
                [2; 20],
                ScrapeEntry {
                    complete: 1,
                    downloaded: 2,
                    incomplete: 3,
                },
            ),
            ([1; 20], ScrapeEntry::default()),
        ]);
        assert_eq!(
            seedbucket_bencode::encode(&seedbucket_bencode::decode(&s).unwrap()),
            s
        );
        assert_eq!(encode_failure("no"), b"d14:failure reason2:noe");
    }

    #[test]
    fn plus_is_a_space() {
        let q = "info_hash=+%2B%20aaaaaaaaaaaaaaaaa&peer_id=-AB1234-abcdefghijkl&port=1&left=0";
        assert_eq!(&parse_announce(q).unwrap().info_hash[..3], b" + ");
    }

    #[test]
    fn scrape_parses() {
        assert_eq!(
            parse_scrape(&format!("info_hash={IH}&info_hash={IH}"))
                .unwrap()
                .len(),
            2
        );
        assert!(parse_scrape("").is_err());
        assert!(parse_scrape("info_hash=%00").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(q in ".{0,300}") {
            let _ = parse_announce(&q);
            let _ = parse_scrape(&q);
        }
    }
}
