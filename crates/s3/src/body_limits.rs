//! What a request may send as a body, decided from its head alone (method, whether it names a
//! key, its query) before a byte of the body is read: which bodies are buffered in memory
//! (configuration XML, multi-object delete, multipart completion) and the cap of each, with
//! the error S3 answers over the cap. Pure: no IO.

/// Largest object a single PUT (or one part) may carry, as S3.
pub const MAX_OBJECT_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// A bucket policy, as S3: 20 KB.
pub const POLICY_CAP: u64 = 20 * 1024;
/// ACL, CORS, tagging, lifecycle and other configuration documents.
pub const CONFIG_CAP: u64 = 256 * 1024;
/// CreateBucket's CreateBucketConfiguration (a location constraint).
pub const CREATE_BUCKET_CAP: u64 = 64 * 1024;
/// DeleteObjects: 1000 keys of up to 1024 bytes each, with their XML.
pub const DELETE_OBJECTS_CAP: u64 = 2 * 1024 * 1024;
/// CompleteMultipartUpload: 10,000 parts, each with its ETag and a checksum.
pub const COMPLETE_UPLOAD_CAP: u64 = 4 * 1024 * 1024;
/// The largest of the caps: what the XML codec may ever buffer.
pub const LARGEST_CAP: u64 = COMPLETE_UPLOAD_CAP;
/// Bytes of a refused body kept for the debug log.
pub const EXCERPT_LEN: usize = 256;

/// The S3 error a body over its cap gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// 400 MaxMessageLengthExceeded: "Your request was too big."
    MaxMessageLengthExceeded,
    /// 400 MalformedXML: a DeleteObjects body this large cannot hold 1000 keys or fewer.
    MalformedXml,
    /// 400 EntityTooLarge: an object (or part) over 5 GiB.
    EntityTooLarge,
}

impl OverCap {
    pub fn code(self) -> &'static str {
        match self {
            Self::MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            Self::MalformedXml => "MalformedXML",
            Self::EntityTooLarge => "EntityTooLarge",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::MaxMessageLengthExceeded => "Your request was too big.",
            Self::MalformedXml => {
                "The XML you provided was not well-formed or did not validate against our published schema"
            }
            Self::EntityTooLarge => "Your proposed upload exceeds the maximum allowed size",
        }
    }
}

/// How a request's body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Streamed to the store as it arrives (PutObject, UploadPart); `cap` bounds it.
    Streamed { cap: u64 },
    /// Read whole into memory before the operation runs: at most `cap` bytes.
    Buffered { cap: u64, over: OverCap },
    /// A POST form upload (browser POST Object): not supported, refused before reading.
    FormUpload,
}

impl BodyKind {
    /// The cap and the error over it.
    pub fn cap(self) -> Option<(u64, OverCap)> {
        match self {
            Self::Streamed { cap } => Some((cap, OverCap::EntityTooLarge)),
            Self::Buffered { cap, over } => Some((cap, over)),
            Self::FormUpload => None,
        }
    }

    pub fn is_buffered(self) -> bool {
        matches!(self, Self::Buffered { .. })
    }
}

/// Object subresources whose PUT/POST body is an XML document.
const OBJECT_XML_SUBRESOURCES: &[&str] = &[
    "acl",
    "tagging",
    "retention",
    "legal-hold",
    "restore",
    "select",
];

fn buffered(cap: u64) -> BodyKind {
    BodyKind::Buffered {
        cap,
        over: OverCap::MaxMessageLengthExceeded,
    }
}

/// Classifies a request by its head. `has_key`: the request names an object (not only a
/// bucket or the service); `query`: the raw query string; `content_type`: its header.
pub fn classify(method: &str, has_key: bool, query: &str, content_type: Option<&str>) -> BodyKind {
    let has = |name: &str| query_names(query).any(|n| n == name);
    match (method, has_key) {
        ("PUT", true) => {
            if OBJECT_XML_SUBRESOURCES.iter().any(|s| has(s)) {
                buffered(CONFIG_CAP)
            } else {
                BodyKind::Streamed {
                    cap: MAX_OBJECT_PUT,
                }
            }
        }
        ("PUT", false) => {
            if has("policy") {
                buffered(POLICY_CAP)
            } else if query_names(query).next().is_none() {
                buffered(CREATE_BUCKET_CAP)
            } else {
                buffered(CONFIG_CAP)
            }
        }
        ("POST", false) => {
            let form = content_type.is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
            if form {
                BodyKind::FormUpload
            } else if has("delete") {
                BodyKind::Buffered {
                    cap: DELETE_OBJECTS_CAP,
                    over: OverCap::MalformedXml,
                }
            } else {
                buffered(CONFIG_CAP)
            }
        }
        ("POST", true) if has("uploadId") => buffered(COMPLETE_UPLOAD_CAP),
        // Everything else that carries a body at all (CreateMultipartUpload, GET/DELETE
        // with a stray body, unknown operations) is bounded like a configuration call.
        _ => buffered(CONFIG_CAP),
    }
}

/// The parameter names of a query string (`a=1&b&c=` → a, b, c).
pub fn query_names(query: &str) -> impl Iterator<Item = &str> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
}

/// Whether a path-style (or, with `virtual_host`, host-style) request path names an object.
pub fn path_has_key(path: &str, virtual_host: bool) -> bool {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if virtual_host {
        return !rest.is_empty();
    }
    rest.split_once('/').is_some_and(|(_, key)| !key.is_empty())
}

/// A bounded, printable excerpt of a body for the debug log: at most [`EXCERPT_LEN`] bytes,
/// control bytes escaped, and how much was left out.
pub fn excerpt(body: &[u8], total_len: u64) -> String {
    let shown = &body[..body.len().min(EXCERPT_LEN)];
    let mut out: String = String::from_utf8_lossy(shown).escape_debug().collect();
    let left_out = total_len.saturating_sub(shown.len() as u64);
    if left_out > 0 {
        out.push_str(&format!("… ({left_out} more bytes)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_uploads_stream_and_configuration_is_buffered() {
        assert_eq!(
            classify("PUT", true, "", None),
            BodyKind::Streamed {
                cap: MAX_OBJECT_PUT
            }
        );
        assert_eq!(
            classify("PUT", true, "partNumber=3&uploadId=abc", None),
            BodyKind::Streamed {
                cap: MAX_OBJECT_PUT
            }
        );
        assert_eq!(classify("PUT", true, "tagging", None), buffered(CONFIG_CAP));
        assert_eq!(classify("PUT", true, "acl=", None), buffered(CONFIG_CAP));
        assert!(classify("PUT", false, "acl", None).is_buffered());
        assert!(classify("PUT", false, "cors", None).is_buffered());
        assert!(classify("PUT", false, "lifecycle", None).is_buffered());
    }

    #[test]
    fn caps_follow_s3() {
        assert_eq!(
            classify("PUT", false, "policy", None).cap(),
            Some((20 * 1024, OverCap::MaxMessageLengthExceeded))
        );
        assert_eq!(
            classify("PUT", false, "", None).cap(),
            Some((CREATE_BUCKET_CAP, OverCap::MaxMessageLengthExceeded))
        );
        assert_eq!(
            classify("POST", false, "delete", None).cap(),
            Some((DELETE_OBJECTS_CAP, OverCap::MalformedXml))
        );
        assert_eq!(
            classify("POST", true, "uploadId=x", None).cap(),
            Some((COMPLETE_UPLOAD_CAP, OverCap::MaxMessageLengthExceeded))
        );
        assert_eq!(
            classify("POST", true, "uploads", None).cap(),
            Some((CONFIG_CAP, OverCap::MaxMessageLengthExceeded))
        );
        assert_eq!(
            classify("PUT", true, "", None).cap(),
            Some((MAX_OBJECT_PUT, OverCap::EntityTooLarge))
        );
        // Every buffered cap is within what the codec may buffer.
        for kind in [
            classify("PUT", false, "policy", None),
            classify("POST", true, "uploadId=1", None),
            classify("POST", false, "delete", None),
            classify("GET", false, "", None),
        ] {
            let (cap, _) = kind.cap().unwrap();
            assert!(cap <= LARGEST_CAP);
        }
    }

    #[test]
    fn a_delete_body_holding_1000_long_keys_fits() {
        let key = "k".repeat(1024);
        let one = format!("<Object><Key>{key}</Key><VersionId>null</VersionId></Object>");
        let body = format!("<Delete><Quiet>true</Quiet>{}</Delete>", one.repeat(1000));
        assert!((body.len() as u64) < DELETE_OBJECTS_CAP);
    }

    #[test]
    fn a_complete_body_of_10000_parts_fits() {
        let part = "<Part>\n  <PartNumber>10000</PartNumber>\n  <ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag>\n  <ChecksumSHA256>47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=</ChecksumSHA256>\n</Part>\n";
        let body = format!(
            "<CompleteMultipartUpload>{}</CompleteMultipartUpload>",
            part.repeat(10_000)
        );
        assert!((body.len() as u64) < COMPLETE_UPLOAD_CAP);
    }

    #[test]
    fn form_uploads_are_recognised() {
        assert_eq!(
            classify("POST", false, "", Some("multipart/form-data; boundary=xyz")),
            BodyKind::FormUpload
        );
        assert_eq!(
            classify("POST", false, "", Some("Multipart/Form-Data")),
            BodyKind::FormUpload
        );
        assert!(classify("POST", false, "delete", Some("application/xml")).is_buffered());
    }

    #[test]
    fn keys_in_paths() {
        assert!(path_has_key("/bucket/key", false));
        assert!(path_has_key("/bucket/a/b", false));
        assert!(!path_has_key("/bucket", false));
        assert!(!path_has_key("/bucket/", false));
        assert!(!path_has_key("/", false));
        assert!(path_has_key("/key", true));
        assert!(!path_has_key("/", true));
    }

    #[test]
    fn query_names_ignore_values() {
        let names: Vec<_> = query_names("uploadId=a%3Db&partNumber=2&torrent").collect();
        assert_eq!(names, ["uploadId", "partNumber", "torrent"]);
        assert_eq!(query_names("").count(), 0);
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        let body = vec![b'A'; 10_000];
        let e = excerpt(&body, 15_000_000);
        assert!(e.len() < EXCERPT_LEN + 40, "{}", e.len());
        assert!(e.ends_with("(14999744 more bytes)"));
        let e = excerpt(b"<a>\n\x00</a>", 9);
        assert_eq!(e, "<a>\\n\\0</a>");
    }
}
