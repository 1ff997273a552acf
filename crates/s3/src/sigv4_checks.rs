//! Checks of a request's SigV4 form that S3 makes and the codec does not: the algorithm
//! name, a presigned URL's lifetime (at most 604800 s), SignedHeaders naming only
//! headers the request carries, and dates made of digits (the credential's `yyyyMMdd` and
//! `X-Amz-Date`'s `yyyyMMdd'T'HHmmss'Z'`; the codec's date parser subtracts before it checks
//! for a digit, which panics in a debug build). They run on the head alone, before the signature is
//! verified, so a request S3 would refuse never reaches an operation. Pure: no IO.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// The longest a presigned URL may live, as S3: one week.
pub const MAX_PRESIGNED_EXPIRES: u64 = 604_800;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An S3 error answer: status, code, message, extra XML elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub extra: String,
}

fn query_error(message: &str) -> Refusal {
    Refusal {
        status: 400,
        code: "AuthorizationQueryParametersError",
        message: message.to_owned(),
        extra: String::new(),
    }
}

fn absent_signed_header(name: &str) -> Refusal {
    Refusal {
        status: 403,
        code: "SignatureDoesNotMatch",
        message: "The request signature we calculated does not match the signature you provided. Check your key and signing method.".to_owned(),
        extra: format!("<HeadersNotPresent>{}</HeadersNotPresent>", xml_escape(name)),
    }
}

/// Escapes text for an XML element, and bounds it (a header value can be long).
pub fn xml_escape(s: &str) -> String {
    escape_xml_chars(s.chars().take(256))
}

/// Escapes text for an XML element, whole (text the server chose, or a request path).
pub(crate) fn xml_escape_unbounded(s: &str) -> String {
    escape_xml_chars(s.chars())
}

fn escape_xml_chars(chars: impl Iterator<Item = char>) -> String {
    let mut out = String::new();
    for c in chars {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The value of query parameter `name`, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// The value of `name` (with its `=`) in an `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
/// Signature=…` header; empty if absent.
fn header_field<'a>(auth: &'a str, name: &str) -> &'a str {
    auth.split(',')
        .map(str::trim)
        .find_map(|part| {
            part.strip_prefix(ALGORITHM)
                .map(str::trim)
                .unwrap_or(part)
                .strip_prefix(name)
        })
        .unwrap_or("")
}

/// `yyyyMMdd`: eight ASCII digits.
fn is_short_date(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `yyyyMMdd'T'HHmmss'Z'`.
fn is_long_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// The date field of a credential (`AKID/yyyyMMdd/region/s3/aws4_request`), if it has one.
fn credential_date(credential: &str) -> Option<&str> {
    credential.split('/').nth(1)
}

fn malformed_header(message: &str) -> Refusal {
    Refusal {
        status: 400,
        code: "AuthorizationHeaderMalformed",
        message: message.to_owned(),
        extra: String::new(),
    }
}

/// Whether every name of a `;`-separated SignedHeaders list is a header of the request
/// (`host` may come from the URI's authority, as in HTTP/2); the first absent one if not.
fn first_absent<'a>(signed: &'a str, headers: &HeaderMap, has_authority: bool) -> Option<&'a str> {
    signed
        .split(';')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .find(|name| {
            if *name == "host" && has_authority {
                return false;
            }
            !headers.contains_key(*name)
        })
}

/// Checks a request's authentication form. `query`: the raw query string; `has_authority`:
/// the request URI names a host (HTTP/2's `:authority`).
pub fn check(headers: &HeaderMap, query: &str, has_authority: bool) -> Result<(), Refusal> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let auth = auth.to_str().unwrap_or("");
        let scheme = auth.split([' ', ',']).next().unwrap_or("");
        match scheme {
            ALGORITHM => {
                let signed = header_field(auth, "SignedHeaders=");
                if let Some(name) = first_absent(signed, headers, has_authority) {
                    return Err(absent_signed_header(name));
                }
                let credential = header_field(auth, "Credential=");
                if credential_date(credential).is_some_and(|d| !is_short_date(d)) {
                    return Err(malformed_header(
                        "The authorization header is malformed; Invalid credential date.",
                    ));
                }
                if let Some(date) = headers.get("x-amz-date")
                    && !date.to_str().is_ok_and(is_long_date)
                {
                    return Err(Refusal {
                        status: 403,
                        code: "AccessDenied",
                        message: "AWS authentication requires a valid Date or x-amz-date header"
                            .to_owned(),
                        extra: String::new(),
                    });
                }
            }
            // Signature version 2, which the codec verifies.
            "AWS" => {}
            s if s.starts_with("AWS") => {
                return Err(Refusal {
                    status: 400,
                    code: "InvalidRequest",
                    message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".to_owned(),
                    extra: String::new(),
                });
            }
            _ => {
                return Err(Refusal {
                    status: 400,
                    code: "InvalidArgument",
                    message: "Unsupported Authorization Type".to_owned(),
                    extra: format!(
                        "<ArgumentName>Authorization</ArgumentName><ArgumentValue>{}</ArgumentValue>",
                        xml_escape(auth)
                    ),
                });
            }
        }
    }
    let presigned = ["X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential"]
        .iter()
        .any(|n| query_value(query, n).is_some());
    if !presigned {
        return Ok(());
    }
    if query_value(query, "X-Amz-Algorithm").as_deref() != Some(ALGORITHM) {
        return Err(query_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    if query_value(query, "X-Amz-Credential")
        .as_deref()
        .and_then(credential_date)
        .is_some_and(|d| !is_short_date(d))
    {
        return Err(query_error(
            "Invalid credential date \"X-Amz-Credential\": the date must be yyyyMMdd",
        ));
    }
    if query_value(query, "X-Amz-Date").is_some_and(|d| !is_long_date(&d)) {
        return Err(query_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    if let Some(expires) = query_value(query, "X-Amz-Expires") {
        let n: i128 = expires
            .trim()
            .parse()
            .map_err(|_| query_error("X-Amz-Expires should be a number"))?;
        if n < 0 {
            return Err(query_error("X-Amz-Expires must be non-negative"));
        }
        if n > i128::from(MAX_PRESIGNED_EXPIRES) {
            return Err(query_error(
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ));
        }
    }
    if let Some(signed) = query_value(query, "X-Amz-SignedHeaders")
        && let Some(name) = first_absent(&signed, headers, has_authority)
    {
        return Err(absent_signed_header(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const GOOD_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=abc";

    #[test]
    fn a_well_formed_header_passes() {
        let h = headers(&[
            ("authorization", GOOD_AUTH),
            ("host", "127.0.0.1"),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert_eq!(check(&h, "", false), Ok(()));
        // No authentication at all is the handlers' business.
        assert_eq!(check(&HeaderMap::new(), "", false), Ok(()));
        // Signature version 2 goes on to the codec.
        let v2 = headers(&[("authorization", "AWS AK:c2ln")]);
        assert_eq!(check(&v2, "", false), Ok(()));
    }

    #[test]
    fn dates_that_are_not_digits_are_refused() {
        let bad_credential = GOOD_AUTH.replace("20260101", "!0260101");
        let h = headers(&[
            ("authorization", bad_credential.as_str()),
            ("host", "127.0.0.1"),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert_eq!(
            check(&h, "", false).unwrap_err().code,
            "AuthorizationHeaderMalformed"
        );
        let h = headers(&[
            ("authorization", GOOD_AUTH),
            ("host", "127.0.0.1"),
            ("x-amz-date", "2026010!T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert_eq!(check(&h, "", false).unwrap_err().code, "AccessDenied");
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F%210261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        let host = headers(&[("host", "127.0.0.1")]);
        assert_eq!(
            check(&host, q, false).unwrap_err().code,
            "AuthorizationQueryParametersError"
        );
        let q = q
            .replace("%210261201", "20261201")
            .replace("20261201T000000Z", "20261201T00000!Z");
        assert_eq!(
            check(&host, &q, false).unwrap_err().code,
            "AuthorizationQueryParametersError"
        );
        let q = q.replace("20261201T00000!Z", "20261201T000000Z");
        assert_eq!(check(&host, &q, false), Ok(()));
    }

    #[test]
    fn a_signed_header_missing_from_the_request_is_refused() {
        let h = headers(&[
            ("authorization", GOOD_AUTH),
            ("host", "127.0.0.1"),
            ("x-amz-date", "20260101T000000Z"),
        ]);
        let r = check(&h, "", false).unwrap_err();
        assert_eq!((r.status, r.code), (403, "SignatureDoesNotMatch"));
        assert!(r.extra.contains("x-amz-content-sha256"));
        // host from HTTP/2's :authority counts.
        let h = headers(&[
            ("authorization", GOOD_AUTH),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert!(check(&h, "", false).is_err());
        assert_eq!(check(&h, "", true), Ok(()));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let h = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA512 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
        )]);
        let r = check(&h, "", false).unwrap_err();
        assert_eq!((r.status, r.code), (400, "InvalidRequest"));
        let h = headers(&[("authorization", "Basic dTpw")]);
        let r = check(&h, "", false).unwrap_err();
        assert_eq!((r.status, r.code), (400, "InvalidArgument"));
        assert!(
            r.extra
                .contains("<ArgumentValue>Basic dTpw</ArgumentValue>")
        );
        // The name is case-sensitive, as in S3.
        let h = headers(&[(
            "authorization",
            "aws4-hmac-sha256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
        )]);
        assert!(check(&h, "", false).is_err());
    }

    fn presigned(expires: &str, algorithm: &str, signed: &str) -> String {
        format!(
            "X-Amz-Algorithm={algorithm}&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders={signed}&X-Amz-Signature=abc"
        )
    }

    #[test]
    fn presigned_lifetimes_over_a_week_are_refused() {
        let h = headers(&[("host", "127.0.0.1")]);
        assert_eq!(
            check(&h, &presigned("604800", ALGORITHM, "host"), false),
            Ok(())
        );
        assert_eq!(
            check(&h, &presigned("60", ALGORITHM, "host"), false),
            Ok(())
        );
        for bad in [
            "604801",
            "315360000",
            "-1",
            "ten",
            "99999999999999999999999999",
        ] {
            let r = check(&h, &presigned(bad, ALGORITHM, "host"), false).unwrap_err();
            assert_eq!(
                (r.status, r.code),
                (400, "AuthorizationQueryParametersError"),
                "{bad}"
            );
        }
    }

    #[test]
    fn presigned_algorithm_and_signed_headers_are_checked() {
        let h = headers(&[("host", "127.0.0.1")]);
        let r = check(&h, &presigned("60", "AWS4-HMAC-SHA1", "host"), false).unwrap_err();
        assert_eq!(r.code, "AuthorizationQueryParametersError");
        let r = check(
            &h,
            &presigned("60", ALGORITHM, "host%3Bx-amz-meta-a"),
            false,
        )
        .unwrap_err();
        assert_eq!(r.code, "SignatureDoesNotMatch");
        let h = headers(&[("host", "127.0.0.1"), ("x-amz-meta-a", "1")]);
        assert_eq!(
            check(
                &h,
                &presigned("60", ALGORITHM, "host%3Bx-amz-meta-a"),
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn escaping_bounds_and_neutralises() {
        assert_eq!(xml_escape("<a&b>\n"), "&lt;a&amp;b&gt;?");
        assert_eq!(xml_escape(&"x".repeat(10_000)).len(), 256);
    }
}
