//! The checked-in seed corpus of the hostile-input tests, shared by the crates' `tests/`
//! (each includes this file with `#[path]`): reading `tests/corpus/<parser>/*`, and a proptest
//! strategy that feeds a parser arbitrary bytes or a seed with random mutations.
//!
//! Cases per property: `SEEDBUCKET_FUZZ_CASES` (default 256; the full run uses far more).

#![allow(dead_code)]

use std::path::PathBuf;

use proptest::prelude::*;

/// The corpus directory of one parser.
pub fn corpus_dir(parser: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(parser)
}

/// Every seed input of `parser`, sorted by file name. Panics if there are none, so a moved
/// corpus cannot make a test pass vacuously.
pub fn seeds(parser: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(parser);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).expect("read corpus file");
            (name, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Proptest settings: `SEEDBUCKET_FUZZ_CASES` cases (default 256), no failure persistence
/// files (the corpus is the persistence: add a failing input there).
pub fn config() -> ProptestConfig {
    let cases = std::env::var("SEEDBUCKET_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit of a seed.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    Repeat(usize, usize, u8),
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = b.len();
        match e {
            Edit::Flip(at, x) if len > 0 => b[at % len] ^= x | 1,
            Edit::Insert(at, bytes) => {
                let at = at % (len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(at, n) if len > 0 => {
                let at = at % len;
                let end = (at + n).min(len);
                b.drain(at..end);
            }
            Edit::Truncate(at) => b.truncate(at % (len + 1)),
            // A slice repeated: long runs of nesting, digits or separators.
            Edit::Repeat(at, n, times) if len > 0 => {
                let at = at % len;
                let end = (at + 1 + n % 8).min(len);
                let run: Vec<u8> = b[at..end].repeat(usize::from(*times));
                b.splice(at..at, run);
            }
            _ => {}
        }
    }
    b
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to most of our formats: digits, separators, bencode and XML markup.
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"0123456789:ielde-=&%+<>/\"' \r\n\t\0\xff".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, x)| Edit::Flip(a, x)),
        (any::<usize>(), prop::collection::vec(interesting, 1..8))
            .prop_map(|(a, v)| Edit::Insert(a, v)),
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Edit::Remove(a, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<usize>(), 2u8..200).prop_map(|(a, n, t)| Edit::Repeat(a, n, t)),
    ]
}

/// Inputs for `parser`: arbitrary bytes (up to `max_len`), or a corpus seed with 1 to 8
/// random edits.
pub fn inputs(parser: &str, max_len: usize) -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = seeds(parser).into_iter().map(|(_, b)| b).collect();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..max_len),
        3 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..8))
            .prop_map(|(s, edits)| apply(s, &edits)),
    ]
    .boxed()
}

/// Like [`inputs`], as text (invalid UTF-8 replaced), for parsers that take `&str`.
pub fn text_inputs(parser: &str, max_len: usize) -> BoxedStrategy<String> {
    inputs(parser, max_len)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        .boxed()
}
