//! Put/Get/DeleteBucketLifecycleConfiguration: the rules are checked as S3 checks them and kept
//! in the bucket's record; `crate::lifecycle` applies them.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::timestamp;
use crate::Seedbucket;
use crate::access::Action;

/// Most rules one configuration may hold (S3's limit).
const MAX_RULES: usize = 1000;

fn malformed(why: &str) -> s3s::S3Error {
    s3s::S3Error::with_message(s3s::S3ErrorCode::MalformedXML, why.to_owned())
}

fn positive_days(d: Option<i32>, what: &str) -> S3Result<Option<u32>> {
    match d {
        None => Ok(None),
        Some(n) if n > 0 => Ok(u32::try_from(n).ok()),
        Some(_) => Err(s3s::S3Error::with_message(
            s3s::S3ErrorCode::InvalidArgument,
            format!("'{what}' for an expiration action must be a positive integer"),
        )),
    }
}

/// One rule as sent, checked and made into the stored form.
fn stored_rule(r: LifecycleRule) -> S3Result<seedbucket_store::LifecycleRule> {
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => return Err(malformed("Status must be Enabled or Disabled")),
    };
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "Transitions are not available: this server has one storage class"
        ));
    }
    if r.id.as_ref().is_some_and(|id| id.len() > 255) {
        return Err(s3_error!(
            InvalidArgument,
            "ID length should not exceed allowed limit of 255"
        ));
    }
    let mut rule = seedbucket_store::LifecycleRule {
        id: r.id,
        enabled,
        ..Default::default()
    };
    // The filter: a prefix, one tag, or an And of them (with sizes); or the older top-level
    // Prefix.
    match (r.filter, r.prefix) {
        (Some(_), Some(_)) => {
            return Err(malformed("a rule may have a Filter or a Prefix, not both"));
        }
        (None, prefix) => rule.prefix = prefix.unwrap_or_default(),
        (Some(f), None) => {
            let mut tags = BTreeMap::new();
            let mut add_tag = |t: Tag| -> S3Result<()> {
                let k = t.key.unwrap_or_default();
                if tags.insert(k, t.value.unwrap_or_default()).is_some() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Duplicate Tag Keys are not allowed."
                    ));
                }
                Ok(())
            };
            let parts = usize::from(f.prefix.is_some())
                + usize::from(f.tag.is_some())
                + usize::from(f.and.is_some())
                + usize::from(f.object_size_greater_than.is_some())
                + usize::from(f.object_size_less_than.is_some());
            if parts > 1 {
                return Err(malformed(
                    "a Filter names one condition; use And for several",
                ));
            }
            rule.prefix = f.prefix.unwrap_or_default();
            if let Some(t) = f.tag {
                add_tag(t)?;
            }
            rule.size_greater_than = f
                .object_size_greater_than
                .and_then(|n| u64::try_from(n).ok());
            rule.size_less_than = f.object_size_less_than.and_then(|n| u64::try_from(n).ok());
            if let Some(and) = f.and {
                rule.prefix = and.prefix.unwrap_or_default();
                for t in and.tags.unwrap_or_default() {
                    add_tag(t)?;
                }
                rule.size_greater_than = and
                    .object_size_greater_than
                    .and_then(|n| u64::try_from(n).ok());
                rule.size_less_than = and
                    .object_size_less_than
                    .and_then(|n| u64::try_from(n).ok());
            }
            rule.tags = tags;
        }
    }
    if let Some(e) = r.expiration {
        let marker = e.expired_object_delete_marker.unwrap_or(false);
        let timed = e.days.is_some() || e.date.is_some();
        if e.days.is_some() && e.date.is_some() || marker && timed {
            return Err(malformed(
                "Expiration takes one of Days, Date or ExpiredObjectDeleteMarker",
            ));
        }
        if marker && !rule.tags.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "ExpiredObjectDeleteMarker cannot be specified with tags."
            ));
        }
        rule.expiration_days = positive_days(e.days, "Days")?;
        rule.expiration_date_ns = e.date.map(|d| {
            let t: time::OffsetDateTime = d.into();
            i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
        });
        rule.expired_object_delete_marker = marker;
    }
    if let Some(n) = r.noncurrent_version_expiration {
        rule.noncurrent_days = positive_days(n.noncurrent_days, "NoncurrentDays")?;
        if rule.noncurrent_days.is_none() {
            return Err(malformed(
                "NoncurrentVersionExpiration needs NoncurrentDays",
            ));
        }
        rule.newer_noncurrent_versions = match n.newer_noncurrent_versions {
            None => None,
            Some(k) if (1..=100).contains(&k) => u32::try_from(k).ok(),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "NewerNoncurrentVersions must be between 1 and 100"
                ));
            }
        };
    }
    if let Some(a) = r.abort_incomplete_multipart_upload {
        if !rule.tags.is_empty() {
            return Err(s3_error!(
                InvalidRequest,
                "AbortIncompleteMultipartUpload cannot be specified with Tags."
            ));
        }
        rule.abort_incomplete_days = positive_days(a.days_after_initiation, "DaysAfterInitiation")?;
        if rule.abort_incomplete_days.is_none() {
            return Err(malformed(
                "AbortIncompleteMultipartUpload needs DaysAfterInitiation",
            ));
        }
    }
    let acts = rule.expiration_days.is_some()
        || rule.expiration_date_ns.is_some()
        || rule.expired_object_delete_marker
        || rule.noncurrent_days.is_some()
        || rule.abort_incomplete_days.is_some();
    if !acts {
        return Err(s3_error!(
            InvalidRequest,
            "At least one action needs to be specified in a rule"
        ));
    }
    Ok(rule)
}

/// The stored rule as S3 answers it.
fn answered_rule(r: &seedbucket_store::LifecycleRule) -> LifecycleRule {
    let tag = |(k, v): (&String, &String)| Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    };
    let sizes = r.size_greater_than.is_some() || r.size_less_than.is_some();
    let filter = if r.tags.len() > 1 || (!r.tags.is_empty() && !r.prefix.is_empty()) || sizes {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: Some(r.prefix.clone()),
                tags: Some(r.tags.iter().map(tag).collect()),
                object_size_greater_than: r.size_greater_than.and_then(|n| i64::try_from(n).ok()),
                object_size_less_than: r.size_less_than.and_then(|n| i64::try_from(n).ok()),
            }),
            ..Default::default()
        }
    } else if let Some(t) = r.tags.iter().next() {
        LifecycleRuleFilter {
            tag: Some(tag(t)),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: Some(r.prefix.clone()),
            ..Default::default()
        }
    };
    let expiration = (r.expiration_days.is_some()
        || r.expiration_date_ns.is_some()
        || r.expired_object_delete_marker)
        .then(|| LifecycleExpiration {
            days: r.expiration_days.and_then(|d| i32::try_from(d).ok()),
            date: r.expiration_date_ns.map(timestamp),
            expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
        });
    LifecycleRule {
        id: r.id.clone(),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter: Some(filter),
        expiration,
        noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: i32::try_from(d).ok(),
            newer_noncurrent_versions: r
                .newer_noncurrent_versions
                .and_then(|n| i32::try_from(n).ok()),
        }),
        abort_incomplete_multipart_upload: r.abort_incomplete_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: i32::try_from(d).ok(),
            }
        }),
        prefix: None,
        transitions: None,
        noncurrent_version_transitions: None,
    }
}

impl Seedbucket {
    pub(crate) async fn h_put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let rules = input
            .lifecycle_configuration
            .map(|c| c.rules)
            .unwrap_or_default();
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(malformed("a lifecycle configuration holds 1 to 1000 rules"));
        }
        let mut stored = Vec::with_capacity(rules.len());
        for r in rules {
            let rule = stored_rule(r)?;
            if let Some(id) = &rule.id
                && stored
                    .iter()
                    .any(|o: &seedbucket_store::LifecycleRule| o.id.as_ref() == Some(id))
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "Rule ID must be unique. Found same ID for more than one rule"
                ));
            }
            stored.push(rule);
        }
        // (Authorized before its body was read: `authorize_before_body`.)
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            move |b| b.lifecycle = stored,
        )
        .await?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(crate) async fn h_get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        if access.bucket.lifecycle.is_empty() {
            return Err(s3_error!(
                NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist"
            ));
        }
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(access.bucket.lifecycle.iter().map(answered_rule).collect()),
            ..Default::default()
        }))
    }

    pub(crate) async fn h_delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let input = req.input;
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            |b| b.lifecycle.clear(),
        )
        .await?;
        Ok(super::config::no_content(DeleteBucketLifecycleOutput {}))
    }

    /// Applies every bucket's lifecycle rules once, as of `as_of_ns` (default: now).
    pub async fn run_lifecycle(
        &self,
        as_of_ns: Option<i64>,
    ) -> Result<crate::lifecycle::LifecycleReport, String> {
        let now = as_of_ns.unwrap_or_else(seedbucket_store::now_ns);
        crate::lifecycle::run_once(&self.store, now)
            .await
            .map_err(|e| e.to_string())
    }
}
