//! Canonical bencode (BEP 3), no IO.
//!
//! - [`Value`] and [`encode`]: dictionary keys sorted by raw bytes, integers as `i64`, so the
//!   same value always gives the same bytes (torrents must be byte-for-byte deterministic).
//! - [`DictWriter`]: writes a dictionary straight into a buffer, checking key order, for the hot
//!   path of building torrents without an intermediate tree.
//! - [`decode`]: strict. It rejects what a canonical encoder never writes (`i03e`, `i-0e`,
//!   unsorted or repeated keys, trailing bytes) and never panics; [`dict_entry_span`] returns the
//!   exact bytes of a top-level entry, so an info-hash is computed over the bytes as received.
//! - [`decode_lenient`]: for messages from other programs (a peer's BEP 10 extension
//!   handshake), where only key order is relaxed: unsorted dictionary keys are accepted, while
//!   repeated keys and everything else the strict decoder refuses are still refused.

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why input is not canonical bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("integer at byte {0} is not canonical or does not fit in 64 bits")]
    BadInt(usize),
    #[error("string length at byte {0} is not canonical or exceeds the input")]
    BadLength(usize),
    #[error("dictionary keys at byte {0} are not in strictly ascending order")]
    KeyOrder(usize),
    #[error("nesting deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    #[error("{0} bytes after the value")]
    Trailing(usize),
    #[error("dictionary key at byte {0} appears twice")]
    DuplicateKey(usize),
}

/// Deepest nesting the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// Appends the canonical encoding of `v` to `out`.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => write_int(out, *i),
        Value::Bytes(b) => write_bytes(out, b),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, item) in map {
                write_bytes(out, k);
                encode_into(item, out);
            }
            out.push(b'e');
        }
    }
}

/// The canonical encoding of `v`.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// Writes `i<n>e`.
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// Writes `<len>:<bytes>`.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Writes a dictionary directly into a buffer. Keys must come in strictly ascending byte order;
/// a key out of order is a programming error and panics in debug builds (values are written
/// regardless of order in release, so callers are tested to add keys sorted).
pub struct DictWriter<'a> {
    out: &'a mut Vec<u8>,
    last: Option<Vec<u8>>,
}

impl<'a> DictWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'd');
        Self { out, last: None }
    }

    fn key(&mut self, k: &[u8]) {
        debug_assert!(
            self.last.as_deref().is_none_or(|l| l < k),
            "bencode dictionary keys out of order: {:?} after {:?}",
            String::from_utf8_lossy(k),
            self.last.as_deref().map(String::from_utf8_lossy)
        );
        self.last = Some(k.to_vec());
        write_bytes(self.out, k);
    }

    pub fn int(&mut self, k: &[u8], v: i64) -> &mut Self {
        self.key(k);
        write_int(self.out, v);
        self
    }

    pub fn bytes(&mut self, k: &[u8], v: &[u8]) -> &mut Self {
        self.key(k);
        write_bytes(self.out, v);
        self
    }

    /// A value that is already bencoded (copied verbatim).
    pub fn raw(&mut self, k: &[u8], encoded: &[u8]) -> &mut Self {
        self.key(k);
        self.out.extend_from_slice(encoded);
        self
    }

    pub fn value(&mut self, k: &[u8], v: &Value) -> &mut Self {
        self.key(k);
        encode_into(v, self.out);
        self
    }

    pub fn finish(self) {
        self.out.push(b'e');
    }
}

/// Decodes exactly one value spanning all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, Error> {
    let (v, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(Error::Trailing(input.len() - used));
    }
    Ok(v)
}

/// Decodes one value at the start of `input`; returns it and the bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), Error> {
    let mut p = Parser {
        input,
        pos: 0,
        sorted_keys: true,
    };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Like [`decode`], but dictionary keys may come in any order (as some clients write them).
/// A key repeated within one dictionary is still an error ([`Error::DuplicateKey`]), as are
/// non-canonical integers and lengths, trailing bytes and excessive nesting. Re-encoding the
/// result with [`encode`] gives the canonical form.
pub fn decode_lenient(input: &[u8]) -> Result<Value, Error> {
    let (v, used) = decode_prefix_lenient(input)?;
    if used != input.len() {
        return Err(Error::Trailing(input.len() - used));
    }
    Ok(v)
}

/// Like [`decode_prefix`], with the key-order leniency of [`decode_lenient`].
pub fn decode_prefix_lenient(input: &[u8]) -> Result<(Value, usize), Error> {
    let mut p = Parser {
        input,
        pos: 0,
        sorted_keys: false,
    };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// The exact bytes of the value under `key` in the top-level dictionary `input`, as received.
pub fn dict_entry_span<'a>(input: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, Error> {
    let mut p = Parser {
        input,
        pos: 0,
        sorted_keys: true,
    };
    p.expect(b'd')?;
    let mut last: Option<&[u8]> = None;
    let mut found = None;
    loop {
        match p.peek()? {
            b'e' => {
                p.pos += 1;
                break;
            }
            _ => {
                let at = p.pos;
                let k = p.string()?;
                if last.is_some_and(|l| l >= k) {
                    return Err(Error::KeyOrder(at));
                }
                last = Some(k);
                let start = p.pos;
                p.value(1)?;
                if k == key {
                    found = Some(&input[start..p.pos]);
                }
            }
        }
    }
    if p.pos != input.len() {
        return Err(Error::Trailing(input.len() - p.pos));
    }
    Ok(found)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Whether dictionary keys must be strictly ascending (else only unique).
    sorted_keys: bool,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(Error::Eof(self.pos))
    }

    fn expect(&mut self, b: u8) -> Result<(), Error> {
        let got = self.peek()?;
        if got != b {
            return Err(Error::Unexpected {
                byte: got,
                at: self.pos,
            });
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(self.pos));
        }
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.string().map(|s| Value::Bytes(s.to_vec())),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                let mut last: Option<&[u8]> = None;
                while self.peek()? != b'e' {
                    let at = self.pos;
                    let k = self.string()?;
                    if self.sorted_keys {
                        if last.is_some_and(|l| l >= k) {
                            return Err(Error::KeyOrder(at));
                        }
                        last = Some(k);
                    } else if map.contains_key(k) {
                        return Err(Error::DuplicateKey(at));
                    }
                    let v = self.value(depth + 1)?;
                    map.insert(k.to_vec(), v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            byte => Err(Error::Unexpected { byte, at: self.pos }),
        }
    }

    fn int(&mut self) -> Result<i64, Error> {
        let start = self.pos;
        self.expect(b'i')?;
        let end = self.input[self.pos..]
            .iter()
            .position(|&b| b == b'e')
            .map(|i| self.pos + i)
            .ok_or(Error::Eof(self.input.len()))?;
        let digits = &self.input[self.pos..end];
        let canonical = match digits {
            [b'0'] => true,
            [b'-', b'1'..=b'9', rest @ ..] | [b'1'..=b'9', rest @ ..] => {
                rest.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        };
        if !canonical {
            return Err(Error::BadInt(start));
        }
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(Error::BadInt(start))?;
        self.pos = end + 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let colon = self.input[self.pos..]
            .iter()
            .take(21)
            .position(|&b| b == b':')
            .map(|i| self.pos + i)
            .ok_or(Error::BadLength(start))?;
        let digits = &self.input[self.pos..colon];
        let canonical =
            matches!(digits, [b'0'] | [b'1'..=b'9', ..]) && digits.iter().all(u8::is_ascii_digit);
        if !canonical {
            return Err(Error::BadLength(start));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::BadLength(start))?;
        let begin = colon + 1;
        let end = begin
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(Error::BadLength(start))?;
        self.pos = end;
        Ok(&self.input[begin..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dict(pairs: &[(&str, Value)]) -> Value {
        Value::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn canonical_output() {
        let v = dict(&[
            ("z", Value::Int(-3)),
            ("a", Value::Bytes(b"xy".to_vec())),
            ("m", Value::List(vec![Value::Int(0)])),
        ]);
        assert_eq!(encode(&v), b"d1:a2:xy1:mli0ee1:zi-3ee");
        assert_eq!(decode(b"d1:a2:xy1:mli0ee1:zi-3ee"), Ok(v));
        assert_eq!(encode(&Value::Int(i64::MIN)), b"i-9223372036854775808e");
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"i-e",
            b"i1",
            b"01:a",
            b"2:a",
            b"d1:b0:1:a0:e",
            b"d1:a0:1:a0:e",
            b"le1",
            b"x",
            b"",
            b"i99999999999999999999e",
            b"l",
            b"d1:ae",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 2), "e".repeat(MAX_DEPTH + 2));
        assert!(matches!(decode(deep.as_bytes()), Err(Error::TooDeep(_))));
    }

    #[test]
    fn lenient_accepts_unsorted_keys_only() {
        let unsorted = b"d1:zi1e1:ad1:y0:1:x0:ee";
        assert!(matches!(decode(unsorted), Err(Error::KeyOrder(_))));
        let v = decode_lenient(unsorted).unwrap();
        assert_eq!(encode(&v), b"d1:ad1:x0:1:y0:e1:zi1ee");
        assert_eq!(
            decode_lenient(b"d1:a0:1:b0:1:a0:e"),
            Err(Error::DuplicateKey(11))
        );
        for bad in [
            &b"i03e"[..],
            b"d1:bi-0ee",
            b"d1:b01:ae",
            b"d1:a0:e1",
            b"d1:ae",
            b"",
            b"l",
        ] {
            assert!(
                decode_lenient(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            decode_prefix_lenient(b"d1:b0:1:a0:eXY").map(|r| r.1),
            Ok(12)
        );
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 2), "e".repeat(MAX_DEPTH + 2));
        assert!(matches!(
            decode_lenient(deep.as_bytes()),
            Err(Error::TooDeep(_))
        ));
    }

    #[test]
    fn spans_are_exact() {
        let t = b"d8:announce3:url4:infod4:name1:xe5:otheri1ee";
        assert_eq!(
            dict_entry_span(t, b"info").unwrap(),
            Some(&b"d4:name1:xe"[..])
        );
        assert_eq!(dict_entry_span(t, b"missing").unwrap(), None);
    }

    #[test]
    fn dict_writer_matches_encode() {
        let mut out = Vec::new();
        let mut w = DictWriter::new(&mut out);
        w.bytes(b"a", b"1")
            .int(b"b", 2)
            .value(b"c", &Value::List(vec![]))
            .raw(b"d", b"i4e");
        w.finish();
        assert_eq!(out, b"d1:a1:11:bi2e1:cle1:di4ee");
    }

    /// Walks the whole input with bendy's strict decoder (sorted keys, canonical integers).
    fn bendy_accepts(bytes: &[u8]) -> bool {
        use bendy::decoding::{Decoder, Error as BendyError, Object};
        fn walk(obj: Object<'_, '_>) -> Result<(), BendyError> {
            match obj {
                Object::List(mut l) => {
                    while let Some(o) = l.next_object()? {
                        walk(o)?;
                    }
                }
                Object::Dict(mut d) => {
                    while let Some((_, o)) = d.next_pair()? {
                        walk(o)?;
                    }
                }
                Object::Integer(_) | Object::Bytes(_) => {}
            }
            Ok(())
        }
        let mut dec = Decoder::new(bytes).with_max_depth(MAX_DEPTH + 2);
        let first = match dec.next_object() {
            Ok(Some(o)) => walk(o).is_ok(),
            _ => false,
        };
        first && matches!(dec.next_object(), Ok(None))
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes)
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(decode(&bytes), Ok(v));
        }

        #[test]
        fn strict_oracle_accepts_our_output(v in arb_value()) {
            let bytes = encode(&v);
            let ours_again = encode(&decode(&bytes).unwrap());
            prop_assert_eq!(&ours_again, &bytes);
            prop_assert!(bendy_accepts(&bytes), "bendy rejected {:?}", bytes);
        }

        #[test]
        fn lenient_agrees_with_strict_on_canonical(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(decode_lenient(&bytes), Ok(v));
        }

        #[test]
        fn lenient_reads_reversed_key_order(v in arb_value()) {
            /// Like `encode_into`, with every dictionary's keys written in descending order.
            fn reversed(v: &Value, out: &mut Vec<u8>) {
                match v {
                    Value::Dict(map) => {
                        out.push(b'd');
                        for (k, item) in map.iter().rev() {
                            write_bytes(out, k);
                            reversed(item, out);
                        }
                        out.push(b'e');
                    }
                    Value::List(items) => {
                        out.push(b'l');
                        for item in items {
                            reversed(item, out);
                        }
                        out.push(b'e');
                    }
                    other => encode_into(other, out),
                }
            }
            let mut bytes = Vec::new();
            reversed(&v, &mut bytes);
            prop_assert_eq!(decode_lenient(&bytes), Ok(v));
        }

        #[test]
        fn lenient_accepts_what_strict_accepts(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = decode(&input) {
                prop_assert_eq!(decode_lenient(&input), Ok(v));
            }
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&input);
            let _ = decode_lenient(&input);
            let _ = dict_entry_span(&input, b"info");
        }

        #[test]
        fn never_panics_on_mutations(v in arb_value(), flip in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = encode(&v);
            if !bytes.is_empty() {
                let i = flip % bytes.len();
                bytes[i] = byte;
            }
            if let Ok(w) = decode(&bytes) {
                prop_assert_eq!(encode(&w), bytes);
            }
        }
    }
}
