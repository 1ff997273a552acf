//! Hostile input for this crate's own parsers of request data (s3s parses the rest; the real
//! server is driven with hostile requests in crates/it/tests/hostile_http.rs): the webseed's
//! `Range`, `x-amz-copy-source-range`, `x-amz-tagging`, bucket policy documents and the
//! wildcard matching of their resources, SSE-C headers and tracker tokens in queries.
//! Properties: no panic, results within the input's bounds, client mistakes are client errors.
//! Seeds: tests/corpus/{s3_range,s3_tagging,s3_policy,s3_sse}.

#[path = "../../../tests/corpus/replay.rs"]
mod replay;

use proptest::prelude::*;
use seedbucket_s3::parsers;

const SIZES: [u64; 5] = [0, 1, 1000, 5 << 30, u64::MAX];

fn check_range(value: &str) {
    for size in SIZES {
        if let Ok(Some((start, end))) = parsers::webseed_range(value, size) {
            assert!(
                start < end && end <= size,
                "{value:?} on {size}: {start}..{end}"
            );
        }
        match parsers::copy_source_range(value, size) {
            Ok((start, end)) => assert!(start < end && end <= size),
            Err(code) => assert!(["InvalidArgument", "InvalidRange"].contains(&code.as_str())),
        }
    }
}

fn check_tagging(value: &str) {
    match parsers::tagging_header(value) {
        Ok(tags) => {
            assert!(tags.len() <= 10);
            let chars: usize = tags.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(chars <= value.len());
        }
        Err(code) => assert_ne!(code, "InternalError"),
    }
}

fn check_policy(text: &str) {
    let _ = parsers::bucket_policy(text, "bucket");
    // Resource patterns come from the owner, names from anyone: both arbitrary here.
    let half = text.len() / 2;
    let (p, t) = text.split_at(text.floor_char_boundary(half));
    let _ = parsers::policy_wildcard(p, t);
}

fn check_sse(lines: &str) {
    let mut it = lines.splitn(3, '\n');
    let (a, k, m) = (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    );
    if let Err(code) = parsers::sse_customer_key(a, k, m) {
        assert_ne!(code, "InternalError");
    }
}

fn check_token(query: &str) {
    if let Some(t) = parsers::tracker_token(query) {
        assert!(t.len() <= query.len());
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn corpus_replays() {
    for (_, r) in replay::seeds("s3_range") {
        check_range(&text(&r));
        check_token(&text(&r));
    }
    for (name, t) in replay::seeds("s3_tagging") {
        check_tagging(&text(&t));
        assert!(parsers::tagging_header(&text(&t)).is_ok(), "seed {name}");
    }
    for (name, p) in replay::seeds("s3_policy") {
        check_policy(&text(&p));
        assert!(
            parsers::bucket_policy(&text(&p), "bucket").is_ok(),
            "seed {name}"
        );
    }
    for (name, s) in replay::seeds("s3_sse") {
        check_sse(&text(&s));
        let s = text(&s);
        let mut l = s.splitn(3, '\n');
        let ok = parsers::sse_customer_key(
            l.next().unwrap_or(""),
            l.next().unwrap_or(""),
            l.next().unwrap_or(""),
        );
        assert_eq!(ok, Ok(true), "seed {name}");
    }
}

#[test]
fn wildcards_do_not_backtrack_exponentially() {
    let text = "a".repeat(4000);
    let pattern = format!("{}b", "a*".repeat(200));
    assert!(!parsers::policy_wildcard(&pattern, &text));
}

proptest! {
    #![proptest_config(replay::config())]

    #[test]
    fn range_headers(v in replay::text_inputs("s3_range", 200)) {
        check_range(&v);
        check_token(&v);
    }

    #[test]
    fn tagging_headers(v in replay::text_inputs("s3_tagging", 600)) {
        check_tagging(&v);
    }

    #[test]
    fn policy_documents(v in replay::text_inputs("s3_policy", 1200)) {
        check_policy(&v);
    }

    #[test]
    fn sse_customer_key_headers(v in replay::text_inputs("s3_sse", 200)) {
        check_sse(&v);
    }
}
