//! CORS: preflight `OPTIONS` answers and the headers of actual cross-origin requests, from a
//! bucket's rules (PutBucketCors). Matching is pure; [`crate::service`] applies it.
//!
//! As in S3: the first rule whose origin, method and requested headers all match decides; an
//! origin or header pattern may hold one `*`; a preflight no rule matches is `403`.

use http::{HeaderMap, HeaderValue, header};
use seedbucket_store::CorsRule;

use crate::access::policy::wildcard_match;

/// The first rule allowing `origin` to use `method` with `request_headers`.
pub fn matching_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    request_headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard_match(o, origin))
            && r.allowed_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
            && request_headers.iter().all(|h| {
                r.allowed_headers
                    .iter()
                    .any(|a| wildcard_match(&a.to_ascii_lowercase(), &h.to_ascii_lowercase()))
            })
    })
}

/// The names in an `Access-Control-Request-Headers` value.
pub fn requested_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

fn allow_origin(rule: &CorsRule, origin: &str) -> HeaderValue {
    if rule.allowed_origins.iter().any(|o| o == "*") {
        HeaderValue::from_static("*")
    } else {
        HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null"))
    }
}

/// The headers of a successful preflight answer.
pub fn preflight_headers(rule: &CorsRule, origin: &str, request_headers: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin(rule, origin),
    );
    if let Ok(v) = HeaderValue::from_str(&rule.allowed_methods.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if !request_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&request_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = rule.max_age_seconds
        && let Ok(v) = HeaderValue::from_str(&age.to_string())
    {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
    }
    add_common(&mut h, rule);
    h
}

/// The headers added to an actual cross-origin response.
pub fn response_headers(rule: &CorsRule, origin: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin(rule, origin),
    );
    if let Ok(v) = HeaderValue::from_str(&rule.allowed_methods.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    add_common(&mut h, rule);
    h
}

fn add_common(h: &mut HeaderMap, rule: &CorsRule) {
    if !rule.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&rule.expose_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if !rule.allowed_origins.iter().any(|o| o == "*") {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Headers"),
    );
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method"),
    );
}

/// The webseed answers any origin: a public torrent's bytes are public, and a private one's
/// URL is itself the capability. Browsers need `Content-Range` and `Content-Length` exposed. A
/// preflight may ask for any request headers (WebTorrent sends `Cache-Control`, Firefox adds
/// `User-Agent`): with no credentials involved, the ones asked for are allowed, as long as they
/// are plain header names.
pub fn webseed_headers(h: &mut HeaderMap, requested: Option<&HeaderValue>) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD"),
    );
    let asked = requested.filter(|v| {
        v.to_str().is_ok_and(|s| {
            s.len() <= 1024
                && s.split(',').all(|name| {
                    let name = name.trim();
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        })
    });
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked.cloned().unwrap_or(HeaderValue::from_static("Range")),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Range, Content-Length, Accept-Ranges, ETag"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn matching() {
        let rules = vec![
            rule(&["https://*.example.com"], &["GET", "HEAD"], &["range"]),
            rule(&["*"], &["GET"], &[]),
        ];
        let m = matching_rule(&rules, "https://app.example.com", "GET", &["Range".into()]);
        assert_eq!(
            m.map(|r| r.allowed_origins[0].as_str()),
            Some("https://*.example.com")
        );
        assert!(matching_rule(&rules, "https://other.org", "GET", &["Range".into()]).is_none());
        let any = matching_rule(&rules, "https://other.org", "GET", &[]).unwrap();
        assert_eq!(
            response_headers(any, "https://other.org")
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            "*"
        );
        assert!(matching_rule(&rules, "https://other.org", "PUT", &[]).is_none());
    }
}
