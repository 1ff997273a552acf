//! The metainfo file: the `info` dictionary in v1, hybrid and v2 forms, the outer dictionary,
//! info-hashes, a parser for `seedbucket torrent show` and tests, and magnet links.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use seedbucket_bencode::{DictWriter, Value, dict_entry_span, write_bytes};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use crate::PieceHashes;

/// Which metainfo version to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// BEP 3: read by every client.
    V1,
    /// v1 and v2 keys in one info dictionary (BEP 52 hybrid).
    Hybrid,
    /// BEP 52 only.
    V2,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "v1" => Some(Self::V1),
            "hybrid" => Some(Self::Hybrid),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Hybrid => "hybrid",
            Self::V2 => "v2",
        }
    }

    pub fn has_v1(self) -> bool {
        self != Self::V2
    }

    pub fn has_v2(self) -> bool {
        self != Self::V1
    }
}

/// Why [`build_info`] cannot make the requested form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid bencode: {0}")]
    Bencode(#[from] seedbucket_bencode::Error),
    #[error("the torrent has no info dictionary")]
    NoInfo,
    #[error("the info dictionary lacks or mistypes {0:?}")]
    Field(&'static str),
    #[error("the stored hashes lack the {0} data this format needs")]
    MissingHashes(&'static str),
}

/// The canonical `info` dictionary for one file named `name`.
pub fn build_info(
    name: &str,
    h: &PieceHashes,
    format: Format,
    private: bool,
) -> Result<Vec<u8>, ParseError> {
    let length = i64::try_from(h.length).map_err(|_| ParseError::Field("length"))?;
    let piece_length =
        i64::try_from(h.piece_length).map_err(|_| ParseError::Field("piece length"))?;
    let v1 = if format.has_v1() {
        Some(
            h.v1_pieces
                .as_deref()
                .ok_or(ParseError::MissingHashes("v1"))?,
        )
    } else {
        None
    };
    let file_tree = if format.has_v2() {
        if h.length > 0 && h.v2_root.is_none() {
            return Err(ParseError::MissingHashes("v2"));
        }
        // {name: {"": {length, pieces root}}}
        let mut leaf = Vec::new();
        let mut w = DictWriter::new(&mut leaf);
        w.int(b"length", length);
        if let Some(root) = &h.v2_root {
            w.bytes(b"pieces root", root);
        }
        w.finish();
        let mut file = Vec::new();
        let mut w = DictWriter::new(&mut file);
        w.raw(b"", &leaf);
        w.finish();
        let mut tree = Vec::new();
        let mut w = DictWriter::new(&mut tree);
        w.raw(name.as_bytes(), &file);
        w.finish();
        Some(tree)
    } else {
        None
    };
    let mut out = Vec::new();
    let mut w = DictWriter::new(&mut out);
    if let Some(tree) = &file_tree {
        w.raw(b"file tree", tree);
    }
    if format.has_v1() {
        w.int(b"length", length);
    }
    if format.has_v2() {
        w.int(b"meta version", 2);
    }
    w.bytes(b"name", name.as_bytes());
    w.int(b"piece length", piece_length);
    if let Some(pieces) = v1 {
        w.bytes(b"pieces", pieces);
    }
    if private {
        w.int(b"private", 1);
    }
    w.finish();
    Ok(out)
}

/// Everything outside the info dictionary.
#[derive(Debug, Clone, Default)]
pub struct Outer {
    pub announce: Option<String>,
    /// Tiers of tracker URLs (BEP 12).
    pub announce_list: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// v2: pieces root → piece layer, for files larger than one piece.
    pub piece_layers: Vec<([u8; 32], Vec<u8>)>,
    /// BEP 19 webseeds.
    pub url_list: Vec<String>,
}

/// The metainfo file: `info` embedded verbatim (its hash never drifts), keys sorted, no
/// creation date (the same object and options give the same bytes on any day).
pub fn build_torrent(info: &[u8], outer: &Outer) -> Vec<u8> {
    let mut out = Vec::with_capacity(info.len() + 512);
    let mut w = DictWriter::new(&mut out);
    if let Some(a) = &outer.announce {
        w.bytes(b"announce", a.as_bytes());
    }
    if !outer.announce_list.is_empty() {
        let tiers = Value::List(
            outer
                .announce_list
                .iter()
                .map(|tier| {
                    Value::List(
                        tier.iter()
                            .map(|u| Value::Bytes(u.as_bytes().to_vec()))
                            .collect(),
                    )
                })
                .collect(),
        );
        w.value(b"announce-list", &tiers);
    }
    if let Some(c) = &outer.comment {
        w.bytes(b"comment", c.as_bytes());
    }
    if let Some(c) = &outer.created_by {
        w.bytes(b"created by", c.as_bytes());
    }
    w.raw(b"info", info);
    let layers: BTreeMap<&[u8; 32], &Vec<u8>> = outer
        .piece_layers
        .iter()
        .filter(|(_, layer)| !layer.is_empty())
        .map(|(root, layer)| (root, layer))
        .collect();
    if !layers.is_empty() {
        let mut enc = Vec::new();
        let mut lw = DictWriter::new(&mut enc);
        for (root, layer) in layers {
            lw.bytes(root.as_slice(), layer);
        }
        lw.finish();
        w.raw(b"piece layers", &enc);
    }
    match outer.url_list.as_slice() {
        [] => {}
        [one] => {
            w.bytes(b"url-list", one.as_bytes());
        }
        many => {
            let mut enc = Vec::new();
            enc.push(b'l');
            for u in many {
                write_bytes(&mut enc, u.as_bytes());
            }
            enc.push(b'e');
            w.raw(b"url-list", &enc);
        }
    }
    w.finish();
    out
}

/// The info-hashes of an info dictionary: SHA-1 when it has v1 keys, SHA-256 when v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InfoHashes {
    pub v1: Option<[u8; 20]>,
    pub v2: Option<[u8; 32]>,
}

impl InfoHashes {
    pub fn of_info(info: &[u8], format: Format) -> Self {
        Self {
            v1: format.has_v1().then(|| Sha1::digest(info).into()),
            v2: format.has_v2().then(|| Sha256::digest(info).into()),
        }
    }

    /// The v2 hash as trackers and DHT use it: its first 20 bytes.
    pub fn v2_truncated(&self) -> Option<[u8; 20]> {
        self.v2.map(|h| {
            let mut t = [0u8; 20];
            t.copy_from_slice(&h[..20]);
            t
        })
    }

    /// The hash that names the torrent: v1 when present, else the truncated v2.
    pub fn primary(&self) -> [u8; 20] {
        self.v1.or_else(|| self.v2_truncated()).unwrap_or([0; 20])
    }
}

/// What `parse_torrent` reads out of a metainfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTorrent {
    pub info: Vec<u8>,
    pub hashes: InfoHashes,
    pub name: String,
    pub length: Option<u64>,
    pub piece_length: u64,
    pub private: bool,
    pub announce: Option<String>,
    pub url_list: Vec<String>,
    pub format: Format,
    /// The free-text `comment` (seedbucket names the object version there).
    pub comment: Option<String>,
}

fn dict_get<'a>(d: &'a BTreeMap<Vec<u8>, Value>, k: &str) -> Option<&'a Value> {
    d.get(k.as_bytes())
}

/// Parses a metainfo file strictly (canonical bencode) and computes its info-hashes over the
/// info bytes exactly as they appear.
pub fn parse_torrent(bytes: &[u8]) -> Result<ParsedTorrent, ParseError> {
    let top = match seedbucket_bencode::decode(bytes)? {
        Value::Dict(d) => d,
        _ => return Err(ParseError::Field("top level dictionary")),
    };
    let info_raw = dict_entry_span(bytes, b"info")?.ok_or(ParseError::NoInfo)?;
    let info = match dict_get(&top, "info") {
        Some(Value::Dict(d)) => d,
        _ => return Err(ParseError::NoInfo),
    };
    let has_v1 = matches!(dict_get(info, "pieces"), Some(Value::Bytes(_)));
    let has_v2 = matches!(dict_get(info, "meta version"), Some(Value::Int(2)));
    let format = match (has_v1, has_v2) {
        (true, true) => Format::Hybrid,
        (false, true) => Format::V2,
        (true, false) => Format::V1,
        (false, false) => return Err(ParseError::Field("pieces or meta version")),
    };
    let name = match dict_get(info, "name") {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err(ParseError::Field("name")),
    };
    let piece_length = match dict_get(info, "piece length") {
        Some(Value::Int(n)) if *n > 0 => *n as u64,
        _ => return Err(ParseError::Field("piece length")),
    };
    let length = match dict_get(info, "length") {
        Some(Value::Int(n)) if *n >= 0 => Some(*n as u64),
        _ => None,
    };
    let private = matches!(dict_get(info, "private"), Some(Value::Int(1)));
    let announce = match dict_get(&top, "announce") {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let comment = match dict_get(&top, "comment") {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let url_list = match dict_get(&top, "url-list") {
        Some(Value::Bytes(b)) => vec![String::from_utf8_lossy(b).into_owned()],
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|v| match v {
                Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(ParsedTorrent {
        info: info_raw.to_vec(),
        hashes: InfoHashes::of_info(info_raw, format),
        name,
        length,
        piece_length,
        private,
        announce,
        url_list,
        format,
        comment,
    })
}

/// Characters left as they are in magnet parameters (RFC 3986 unreserved).
const MAGNET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A BEP 9 magnet link: `xt=urn:btih:` (v1) and/or `xt=urn:btmh:1220…` (v2), then `dn`, `xl`,
/// one `tr` per tracker and one `ws` per webseed.
pub fn magnet_uri(
    h: &InfoHashes,
    name: &str,
    length: u64,
    trackers: &[String],
    webseeds: &[String],
) -> String {
    let mut parts = Vec::new();
    if let Some(v1) = h.v1 {
        parts.push(format!("xt=urn:btih:{}", hex::encode(v1)));
    }
    if let Some(v2) = h.v2 {
        parts.push(format!("xt=urn:btmh:1220{}", hex::encode(v2)));
    }
    parts.push(format!("dn={}", utf8_percent_encode(name, MAGNET)));
    parts.push(format!("xl={length}"));
    for t in trackers {
        parts.push(format!("tr={}", utf8_percent_encode(t, MAGNET)));
    }
    for w in webseeds {
        parts.push(format!("ws={}", utf8_percent_encode(w, MAGNET)));
    }
    format!("magnet:?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PieceHasher, piece_length_for};

    fn hashes(data: &[u8]) -> PieceHashes {
        let mut h = PieceHasher::new(
            piece_length_for(data.len() as u64).max(16 * 1024),
            true,
            true,
        );
        h.update(data);
        h.finish()
    }

    #[test]
    fn forms_and_round_trip() {
        let data = vec![7u8; 100_000];
        let h = hashes(&data);
        for format in [Format::V1, Format::Hybrid, Format::V2] {
            let info = build_info("file.bin", &h, format, false).unwrap();
            let outer = Outer {
                announce: Some("http://t/announce".into()),
                url_list: vec!["http://w/file.bin".into()],
                created_by: Some("seedbucket".into()),
                piece_layers: h.v2_root.zip(h.v2_layer.clone()).into_iter().collect(),
                ..Outer::default()
            };
            let t = build_torrent(&info, &outer);
            // Canonical and deterministic.
            assert_eq!(
                seedbucket_bencode::encode(&seedbucket_bencode::decode(&t).unwrap()),
                t
            );
            assert_eq!(build_torrent(&info, &outer), t);
            let p = parse_torrent(&t).unwrap();
            assert_eq!(p.format, format);
            assert_eq!(p.info, info);
            assert_eq!(p.hashes, InfoHashes::of_info(&info, format));
            assert_eq!(p.url_list, ["http://w/file.bin"]);
            assert_eq!(p.name, "file.bin");
        }
        let private = build_info("x", &h, Format::V1, true).unwrap();
        assert!(
            parse_torrent(&build_torrent(&private, &Outer::default()))
                .unwrap()
                .private
        );
    }

    #[test]
    fn magnet_shape() {
        let h = InfoHashes {
            v1: Some([0xab; 20]),
            v2: Some([0xcd; 32]),
        };
        let m = magnet_uri(
            &h,
            "a b.bin",
            5,
            &["http://t/a?x=1".into()],
            &["http://w/a b.bin".into()],
        );
        assert!(m.starts_with(&format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}",
            "ab".repeat(20),
            "cd".repeat(32)
        )));
        assert!(m.contains(
            "&dn=a%20b.bin&xl=5&tr=http%3A%2F%2Ft%2Fa%3Fx%3D1&ws=http%3A%2F%2Fw%2Fa%20b.bin"
        ));
    }
}
