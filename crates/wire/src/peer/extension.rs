//! The BEP 10 extension handshake: the bencoded dictionary of `extended` message id 0.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use seedbucket_bencode::{DictWriter, Value};

/// The `extended` message id of the extension handshake.
pub const EXTENSION_HANDSHAKE_ID: u8 = 0;
/// The BEP 9 metadata extension's name in the handshake's `m` dictionary.
pub const UT_METADATA: &str = "ut_metadata";

/// Why an extension payload (BEP 10 handshake or BEP 9 `ut_metadata` message) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// Not canonical bencode. Our decoder is strict, so a dictionary with unsorted keys is
    /// refused here too.
    #[error("bad bencode: {0}")]
    Bencode(#[from] seedbucket_bencode::Error),
    /// Bencode, but not a dictionary.
    #[error("payload is not a bencoded dictionary")]
    NotADict,
    /// A required key is absent.
    #[error("missing key {0}")]
    Missing(&'static str),
    /// A key or the data carries a value out of range or of the wrong type.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A BEP 10 extension handshake.
///
/// Decoding keeps what it understands and ignores the rest: unknown keys, and optional keys of
/// the wrong type or out of range, leave their field `None` (or out of `m`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// Extension name to the `extended` message id the sender wants to receive it on (for
    /// example `ut_metadata`). Id 0 means the extension is disabled. Names that are not UTF-8
    /// and ids outside 0..=255 are dropped when decoding.
    pub m: BTreeMap<String, u8>,
    /// BEP 9: size of the info dictionary in bytes.
    pub metadata_size: Option<usize>,
    /// The sender's TCP listen port (`p`).
    pub p: Option<u16>,
    /// Outstanding requests the sender queues before dropping more (`reqq`).
    pub reqq: Option<u32>,
    /// Client name and version (`v`); invalid UTF-8 is replaced.
    pub v: Option<String>,
    /// The address the sender sees us at (`yourip`: 4 or 16 bytes on the wire).
    pub yourip: Option<IpAddr>,
}

fn int(d: &BTreeMap<Vec<u8>, Value>, key: &str) -> Option<i64> {
    match d.get(key.as_bytes()) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

fn bytes<'a>(d: &'a BTreeMap<Vec<u8>, Value>, key: &str) -> Option<&'a [u8]> {
    match d.get(key.as_bytes()) {
        Some(Value::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// The top-level dictionary of `v`, or `NotADict`.
pub(super) fn dict(v: Value) -> Result<BTreeMap<Vec<u8>, Value>, ExtensionError> {
    match v {
        Value::Dict(d) => Ok(d),
        _ => Err(ExtensionError::NotADict),
    }
}

impl ExtensionHandshake {
    /// Decodes the payload of an `extended` message with id 0.
    pub fn parse(payload: &[u8]) -> Result<Self, ExtensionError> {
        let d = dict(seedbucket_bencode::decode(payload)?)?;
        let m = match d.get(b"m".as_slice()) {
            Some(Value::Dict(m)) => m
                .iter()
                .filter_map(|(name, id)| {
                    let name = String::from_utf8(name.clone()).ok()?;
                    let Value::Int(id) = id else { return None };
                    Some((name, u8::try_from(*id).ok()?))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let yourip = bytes(&d, "yourip").and_then(|b| match b.len() {
            4 => <[u8; 4]>::try_from(b)
                .ok()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            16 => <[u8; 16]>::try_from(b)
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        });
        Ok(Self {
            m,
            metadata_size: int(&d, "metadata_size").and_then(|n| usize::try_from(n).ok()),
            p: int(&d, "p")
                .and_then(|n| u16::try_from(n).ok())
                .filter(|p| *p != 0),
            reqq: int(&d, "reqq").and_then(|n| u32::try_from(n).ok()),
            v: bytes(&d, "v").map(|b| String::from_utf8_lossy(b).into_owned()),
            yourip,
        })
    }

    /// The canonical bencoding (keys sorted), ready to be the payload of `extended` id 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        let mut w = DictWriter::new(&mut m);
        // A BTreeMap<String, _> iterates in byte order, which is bencode's key order.
        for (name, id) in &self.m {
            w.int(name.as_bytes(), i64::from(*id));
        }
        w.finish();

        let mut out = Vec::new();
        let mut w = DictWriter::new(&mut out);
        w.raw(b"m", &m);
        if let Some(n) = self.metadata_size.and_then(|n| i64::try_from(n).ok()) {
            w.int(b"metadata_size", n);
        }
        if let Some(p) = self.p {
            w.int(b"p", i64::from(p));
        }
        if let Some(q) = self.reqq {
            w.int(b"reqq", i64::from(q));
        }
        if let Some(v) = &self.v {
            w.bytes(b"v", v.as_bytes());
        }
        match self.yourip {
            Some(IpAddr::V4(a)) => {
                w.bytes(b"yourip", &a.octets());
            }
            Some(IpAddr::V6(a)) => {
                w.bytes(b"yourip", &a.octets());
            }
            None => {}
        }
        w.finish();
        out
    }

    /// The id the sender wants extension `name` sent on; `None` if absent or disabled (0).
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|id| *id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ExtensionHandshake {
        ExtensionHandshake {
            m: BTreeMap::from([(UT_METADATA.to_owned(), 3), ("ut_pex".to_owned(), 1)]),
            metadata_size: Some(31_235),
            p: Some(6881),
            reqq: Some(250),
            v: Some("seedbucket 0.1".to_owned()),
            yourip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
        }
    }

    #[test]
    fn exact_encoding() {
        assert_eq!(
            sample().encode(),
            b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
              4:reqqi250e1:v14:seedbucket 0.16:yourip4:\xc0\x00\x02\x07e"
                .to_vec()
        );
        assert_eq!(ExtensionHandshake::default().encode(), b"d1:mdee".to_vec());
    }

    #[test]
    fn round_trips() {
        for h in [
            sample(),
            ExtensionHandshake::default(),
            ExtensionHandshake {
                yourip: Some("2001:db8::1".parse().unwrap()),
                ..sample()
            },
        ] {
            assert_eq!(ExtensionHandshake::parse(&h.encode()), Ok(h));
        }
        assert_eq!(sample().id_of(UT_METADATA), Some(3));
        assert_eq!(sample().id_of("lt_donthave"), None);
    }

    #[test]
    fn tolerant_of_unknown_and_mistyped_keys() {
        let h = ExtensionHandshake::parse(
            b"d12:complete_agoi-1e1:md11:lt_donthavei7e11:ut_metadatai2e6:ut_pexi300ee\
              13:metadata_size3:abc1:pi70000e4:reqqi-5e11:upload_onlyi1e1:vi5e6:yourip3:abce",
        )
        .unwrap();
        assert_eq!(
            h,
            ExtensionHandshake {
                m: BTreeMap::from([("lt_donthave".to_owned(), 7), (UT_METADATA.to_owned(), 2)]),
                ..ExtensionHandshake::default()
            }
        );
        // `m` of the wrong type, `p` of 0, disabled extensions.
        let h = ExtensionHandshake::parse(b"d1:mli1ee1:pi0ee").unwrap();
        assert_eq!(h, ExtensionHandshake::default());
        let h = ExtensionHandshake::parse(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(h.id_of(UT_METADATA), None);
        assert_eq!(h.m.get(UT_METADATA), Some(&0));
        // Lossy client names.
        let h = ExtensionHandshake::parse(b"d1:v2:\xffAe").unwrap();
        assert_eq!(h.v.as_deref(), Some("\u{fffd}A"));
    }

    #[test]
    fn rejects_non_dicts() {
        for bad in [
            &b"le"[..],
            b"i1e",
            b"3:abc",
            b"",
            b"d1:m",
            b"d1:mdee1:x",
            b"d1:pi1e1:mdee",
        ] {
            assert!(ExtensionHandshake::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ExtensionHandshake::parse(b"le"),
            Err(ExtensionError::NotADict)
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ExtensionHandshake::parse(&b);
        }

        #[test]
        fn round_trips_any(
            m in proptest::collection::btree_map("[a-z_]{1,12}", any::<u8>(), 0..5),
            metadata_size in proptest::option::of(0usize..1 << 40),
            p in proptest::option::of(1u16..),
            reqq in proptest::option::of(any::<u32>()),
            v in proptest::option::of(".{0,20}"),
            ip in proptest::option::of(any::<[u8; 16]>()),
        ) {
            let h = ExtensionHandshake {
                m,
                metadata_size,
                p,
                reqq,
                v,
                yourip: ip.map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            };
            prop_assert_eq!(ExtensionHandshake::parse(&h.encode()), Ok(h));
        }
    }
}
