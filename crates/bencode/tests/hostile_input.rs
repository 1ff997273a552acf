//! Hostile input for the bencode decoders (a peer's BEP 10 handshake and `ut_metadata`
//! messages reach them): no panic, output no larger than the input, every call returns.
//! Seeds: tests/corpus/bencode, replayed first, then mutated.

#[path = "../../../tests/corpus/replay.rs"]
mod replay;

use proptest::prelude::*;
use seedbucket_bencode::{
    Value, decode, decode_lenient, decode_prefix, decode_prefix_lenient, dict_entry_span, encode,
};

/// Number of values in the tree: each takes at least two input bytes (`0:`, `le`, `de`).
fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Int(_) | Value::Bytes(_) => 0,
        Value::List(l) => l.iter().map(nodes).sum(),
        Value::Dict(d) => d.len() + d.values().map(nodes).sum::<usize>(),
    }
}

/// The properties every input must satisfy.
fn check(input: &[u8]) {
    if let Ok(v) = decode(input) {
        // Strict decoding accepts only canonical bytes: they re-encode to the input itself.
        assert_eq!(encode(&v), input, "strict decode is not a round trip");
    }
    if let Ok(v) = decode_lenient(input) {
        // Only key order may differ: the same length, so the tree is bounded by the input.
        assert_eq!(encode(&v).len(), input.len());
        assert!(2 * nodes(&v) <= input.len());
    }
    for (v, used) in [decode_prefix(input), decode_prefix_lenient(input)]
        .into_iter()
        .flatten()
    {
        assert!(used <= input.len());
        assert_eq!(encode(&v).len(), used);
    }
    for key in [b"info".as_slice(), b"m", b""] {
        if let Ok(Some(span)) = dict_entry_span(input, key) {
            assert!(span.len() < input.len());
            assert!(decode(span).is_ok(), "a span is one whole value");
        }
    }
}

#[test]
fn corpus_replays() {
    for (name, bytes) in replay::seeds("bencode") {
        check(&bytes);
        // The seeds are valid inputs, so the corpus also exercises the success paths.
        assert!(
            decode_lenient(&bytes).is_ok(),
            "seed {name} no longer decodes"
        );
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion_overflow() {
    for open in [b'l', b'd'] {
        let mut deep = vec![open; 100_000];
        deep.extend(std::iter::repeat_n(b'e', 100_000));
        check(&deep);
        assert!(decode(&deep).is_err());
    }
    // A string length far beyond the input allocates nothing.
    check(b"18446744073709551615:x");
    check(b"99999999999999999999999:x");
    check(b"i-9223372036854775808e");
    check(b"i9223372036854775808e");
}

proptest! {
    #![proptest_config(replay::config())]

    #[test]
    fn arbitrary_and_mutated_inputs(input in replay::inputs("bencode", 512)) {
        check(&input);
    }
}
