//! Every S3 error body as S3 writes it: a `<Message>` in S3's words (clients print it; without
//! one aws-cli prints "Unknown"), the `<RequestId>` of the `x-amz-request-id` header, and the
//! `<Resource>` the request named. Errors made deep in a handler often carry only their code;
//! [`complete`] fills in what is missing, once, for every channel that answers in S3's XML.

use crate::sigv4_checks::xml_escape_unbounded;

/// S3's message for `code`, for the codes seedbucket (and the S3 layer under it) answers with.
pub(crate) fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDenied" => "Access Denied",
        "AuthorizationHeaderMalformed" => "The authorization header is malformed.",
        "AuthorizationQueryParametersError" => {
            "Error parsing the X-Amz-Credential parameter; the query parameters are not valid."
        }
        "BadDigest" => "The Content-MD5 you specified did not match what we received.",
        "BucketAlreadyExists" => {
            "The requested bucket name is not available. The bucket namespace is shared by all \
             users of the system. Please select a different name and try again."
        }
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed size",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "ExpiredToken" => "The provided token has expired.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part may not have been \
             uploaded, or the specified entity tag may not match the part's entity tag."
        }
        "InvalidPartNumber" => "The requested partnumber is not satisfiable",
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        }
        "InvalidRange" => "The requested range is not satisfiable",
        "InvalidRequest" => "Invalid Request",
        "InvalidTag" => "The tag provided was not a valid tag.",
        "KeyTooLongError" => "Your key is too long",
        "MalformedACLError" => {
            "The XML you provided was not well-formed or did not validate against our published schema"
        }
        "MalformedPolicy" => "Policies must be valid JSON and the first byte must be '{'",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema"
        }
        "MaxMessageLengthExceeded" => "Your request was too big.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "MissingSecurityHeader" => "Your request was missing a required header.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchBucketPolicy" => "The bucket policy does not exist",
        "NoSuchCORSConfiguration" => "The CORS configuration does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchTagSet" => "The TagSet does not exist",
        "NoSuchUpload" => {
            "The specified upload does not exist. The upload ID may be invalid, or the upload \
             may have been aborted or completed."
        }
        "NoSuchVersion" => "The specified version does not exist.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented",
        "OperationAborted" => {
            "A conflicting conditional operation is currently in progress against this resource. \
             Please try again."
        }
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "RequestTimeout" => {
            "Your socket connection to the server was not read from or written to within the \
             timeout period. Idle connections will be closed."
        }
        "ServerSideEncryptionConfigurationNotFoundError" => {
            "The server side encryption configuration was not found"
        }
        "ServiceUnavailable" => "Service is unable to handle request.",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method."
        }
        "SlowDown" => "Please reduce your request rate.",
        "UnresolvableGrantByEmailAddress" => {
            "The e-mail address you provided does not match any account on record."
        }
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        _ => return None,
    })
}

/// The text of the first `<name>` element of `xml`, if it has one.
pub(crate) fn field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(unescape(&xml[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// What a request addressed, for the fields of its error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Addressed<'a> {
    /// The path as the client sent it, decoded: `<Resource>`.
    pub resource: &'a str,
    /// `<BucketName>`, on the errors about a bucket that S3 names it in.
    pub bucket: Option<&'a str>,
    /// `<Key>`, on NoSuchKey.
    pub key: Option<&'a str>,
}

impl<'a> Addressed<'a> {
    /// The bucket and key of a decoded request path: the first segment and the rest
    /// (path-style), or all of it as the key when the Host header named the bucket
    /// (`vhost_bucket`). Empty parts are none.
    pub(crate) fn of(resource: &'a str, vhost_bucket: Option<&'a str>) -> Self {
        let within = resource.trim_start_matches('/');
        let (bucket, key) = match vhost_bucket {
            Some(b) => (Some(b), Some(within)),
            None => match within.split_once('/') {
                Some((b, k)) => (Some(b), Some(k)),
                None => (Some(within), None),
            },
        };
        Self {
            resource,
            bucket: bucket.filter(|b| !b.is_empty()),
            key: key.filter(|k| !k.is_empty()),
        }
    }
}

/// Errors whose body names the bucket (`<BucketName>`) in S3.
fn names_bucket(code: &str) -> bool {
    matches!(
        code,
        "NoSuchBucket"
            | "BucketAlreadyExists"
            | "BucketAlreadyOwnedByYou"
            | "BucketNotEmpty"
            | "NoSuchBucketPolicy"
            | "NoSuchCORSConfiguration"
            | "NoSuchTagSet"
    )
}

/// `xml` (an S3 `<Error>` document) with a `<Message>` (S3's for its code, or `fallback`), the
/// `<Resource>`, the `<RequestId>`, and the `<BucketName>` or `<Key>` where S3 has one, added
/// where missing; `None` if it is not an error document or already has all of them.
pub(crate) fn complete(
    xml: &str,
    request_id: &str,
    addressed: Addressed<'_>,
    fallback: &str,
) -> Option<String> {
    let code = field(xml, "Code")?;
    xml.rfind("</Error>")?;
    let has_message = field(xml, "Message").is_some_and(|m| !m.trim().is_empty());
    let has_resource = xml.contains("<Resource>") || addressed.resource.is_empty();
    let has_request_id = xml.contains("<RequestId>");
    let bucket = addressed
        .bucket
        .filter(|b| names_bucket(&code) && !b.is_empty() && !xml.contains("<BucketName>"));
    let key = addressed
        .key
        .filter(|k| code == "NoSuchKey" && !k.is_empty() && !xml.contains("<Key>"));
    if has_message && has_resource && has_request_id && bucket.is_none() && key.is_none() {
        return None;
    }
    let mut body = xml.to_owned();
    if !has_message {
        // An empty `<Message></Message>` or `<Message/>` gives way to the real one.
        body = body
            .replacen("<Message></Message>", "", 1)
            .replacen("<Message/>", "", 1);
        let at = body.find("</Code>")? + "</Code>".len();
        let message = default_message(&code).unwrap_or(fallback);
        body.insert_str(
            at,
            &format!("<Message>{}</Message>", xml_escape_unbounded(message)),
        );
    }
    let mut tail = String::new();
    let mut add = |name: &str, value: &str| {
        tail.push_str(&format!("<{name}>{}</{name}>", xml_escape_unbounded(value)));
    };
    if let Some(b) = bucket {
        add("BucketName", b);
    }
    if let Some(k) = key {
        add("Key", k);
    }
    if !has_resource {
        add("Resource", addressed.resource);
    }
    if !has_request_id {
        add("RequestId", request_id);
    }
    let end = body.rfind("</Error>")?;
    body.insert_str(end, &tail);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    fn at(resource: &str) -> Addressed<'_> {
        Addressed {
            resource,
            ..Addressed::default()
        }
    }

    #[test]
    fn bucket_and_key_where_s3_names_them() {
        let addressed = Addressed {
            resource: "/b/k",
            bucket: Some("b"),
            key: Some("k"),
        };
        let mut out = String::new();
        for (code, bucket, key) in [
            ("NoSuchKey", false, true),
            ("NoSuchBucket", true, false),
            ("AccessDenied", false, false),
        ] {
            out = complete(
                &format!("<Error><Code>{code}</Code></Error>"),
                "R",
                addressed,
                "x",
            )
            .unwrap();
            assert_eq!(out.contains("<BucketName>b</BucketName>"), bucket, "{out}");
            assert_eq!(out.contains("<Key>k</Key>"), key, "{out}");
        }
        assert_eq!(complete(&out, "R", addressed, "x"), None);
    }

    #[test]
    fn a_bare_code_gets_s3s_message_resource_and_request_id() {
        let xml = format!("{HEAD}<Error><Code>BucketAlreadyOwnedByYou</Code></Error>");
        let out = complete(&xml, "ABC123", at("/my-bucket"), "Conflict").unwrap();
        assert_eq!(
            out,
            format!(
                "{HEAD}<Error><Code>BucketAlreadyOwnedByYou</Code><Message>Your previous request \
                 to create the named bucket succeeded and you already own it.</Message>\
                 <Resource>/my-bucket</Resource><RequestId>ABC123</RequestId></Error>"
            )
        );
        assert_eq!(field(&out, "RequestId").as_deref(), Some("ABC123"));
    }

    #[test]
    fn what_is_there_stays() {
        let xml = "<Error><Code>NoSuchKey</Code><Message>gone &amp; away</Message><Key>a&lt;b</Key></Error>";
        let out = complete(xml, "R1", at("/b/a<b"), "Not Found").unwrap();
        assert_eq!(
            out,
            "<Error><Code>NoSuchKey</Code><Message>gone &amp; away</Message><Key>a&lt;b</Key>\
             <Resource>/b/a&lt;b</Resource><RequestId>R1</RequestId></Error>"
        );
        assert_eq!(
            complete(&out, "R2", at("/x"), "x"),
            None,
            "complete already"
        );
    }

    #[test]
    fn empty_messages_and_unknown_codes() {
        let xml = "<Error><Code>Mystery</Code><Message></Message></Error>";
        let out = complete(xml, "R", at(""), "Bad Request").unwrap();
        assert_eq!(
            out,
            "<Error><Code>Mystery</Code><Message>Bad Request</Message><RequestId>R</RequestId></Error>"
        );
        assert_eq!(complete("not xml", "R", at("/"), "x"), None);
        assert_eq!(
            complete("<Error><Message>m</Message></Error>", "R", at("/"), "x"),
            None
        );
    }
}
