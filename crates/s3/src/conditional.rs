//! HTTP conditional requests as S3 evaluates them (RFC 7232 order): If-Match, then
//! If-Unmodified-Since when If-Match is absent (412); If-None-Match, then If-Modified-Since when
//! If-None-Match is absent (304 for GET/HEAD). Dates compare at one-second precision.

use s3s::dto::{ETagCondition, Timestamp};

/// What the conditions decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    NotModified,
    PreconditionFailed,
}

pub struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl Conditions<'_> {
    /// Evaluates against the current ETag (unquoted) and Last-Modified (ns since epoch).
    pub fn evaluate(&self, etag: &str, last_modified_ns: i64) -> Outcome {
        let modified = last_modified_ns.div_euclid(1_000_000_000);
        if let Some(c) = self.if_match {
            if !matches(c, etag) {
                return Outcome::PreconditionFailed;
            }
        } else if let Some(t) = self.if_unmodified_since
            && modified > seconds(t)
        {
            return Outcome::PreconditionFailed;
        }
        if let Some(c) = self.if_none_match {
            if matches(c, etag) {
                return Outcome::NotModified;
            }
        } else if let Some(t) = self.if_modified_since
            && modified <= seconds(t)
        {
            return Outcome::NotModified;
        }
        Outcome::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    fn ts(secs: i64) -> Timestamp {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap()
            .into()
    }

    #[test]
    fn rfc_order() {
        let tag = ETagCondition::ETag(ETag::Strong("abc".into()));
        let other = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let at = 1_000 * 1_000_000_000 + 5; // 1000.000000005 s
        let none = Conditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: None,
        };
        assert_eq!(none.evaluate("abc", at), Outcome::Proceed);
        let c = Conditions {
            if_match: Some(&other),
            ..none
        };
        assert_eq!(c.evaluate("abc", at), Outcome::PreconditionFailed);
        // If-Match true overrides a failing If-Unmodified-Since.
        let (early, late) = (ts(10), ts(5000));
        let c = Conditions {
            if_match: Some(&tag),
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: Some(&early),
        };
        assert_eq!(c.evaluate("abc", at), Outcome::Proceed);
        let c = Conditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: Some(&early),
        };
        assert_eq!(c.evaluate("abc", at), Outcome::PreconditionFailed);
        let c = Conditions {
            if_match: None,
            if_none_match: Some(&tag),
            if_modified_since: None,
            if_unmodified_since: None,
        };
        assert_eq!(c.evaluate("abc", at), Outcome::NotModified);
        // If-None-Match false overrides If-Modified-Since.
        let c = Conditions {
            if_match: None,
            if_none_match: Some(&other),
            if_modified_since: Some(&late),
            if_unmodified_since: None,
        };
        assert_eq!(c.evaluate("abc", at), Outcome::Proceed);
        let same = ts(1000);
        let c = Conditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: Some(&same),
            if_unmodified_since: None,
        };
        assert_eq!(c.evaluate("abc", at), Outcome::NotModified);
    }
}
