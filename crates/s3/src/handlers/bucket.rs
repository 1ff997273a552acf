//! ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::timestamp;
use crate::Seedbucket;
use crate::access::Action;
use crate::error::to_s3;
use seedbucket_store::Versioning;

/// S3 bucket naming rules (general purpose buckets).
pub(crate) fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge_ok(b[0]) || !edge_ok(b[b.len() - 1]) {
        return false;
    }
    if !b.iter().all(|&c| edge_ok(c) || c == b'-' || c == b'.') {
        return false;
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return false;
    }
    let is_ip = name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok());
    let reserved = name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.starts_with("amzn-s3-demo-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
        || name.ends_with(".mrap")
        || name.ends_with("--x-s3");
    !is_ip && !reserved
}

impl Seedbucket {
    pub(crate) async fn h_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let caller = crate::auth::caller(&self.keys, req.credentials.as_ref())?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // `max-buckets` (1 to 10,000) pages the list; the continuation token is the last name
        // of the previous page.
        let max = match input.max_buckets {
            None => usize::MAX,
            Some(n @ 1..=10_000) => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-buckets must be an integer between 1 and 10000"
                ));
            }
        };
        let after = input.continuation_token.clone().unwrap_or_default();
        let mut owned: Vec<_> = self
            .store
            .list_buckets()
            .await
            .map_err(to_s3)?
            .into_iter()
            .filter(|b| {
                (b.owner == caller.user_id || caller.is_admin())
                    && b.name.starts_with(&prefix)
                    && b.name > after
            })
            .collect();
        owned.sort_by(|a, b| a.name.cmp(&b.name));
        let more = owned.len() > max;
        owned.truncate(max);
        let next = more.then(|| owned.last().map(|b| b.name.clone())).flatten();
        let buckets = owned
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ns)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner_of(&caller.user_id)),
            continuation_token: next,
            prefix: input.prefix,
        }))
    }

    pub(crate) async fn h_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = crate::auth::caller(&self.keys, req.credentials.as_ref())?;
        let name = req.input.bucket;
        if !valid_bucket_name(&name) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            ));
        }
        let acl = self.requested_acl(
            req.input.acl.as_ref().map(|a| a.as_str()),
            &grant_headers!(req.input),
            &caller.user_id,
            &caller.user_id,
        )?;
        if req.input.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(NotImplemented, "Object Lock is not implemented"));
        }
        self.store
            .create_bucket(&name, &caller.user_id, acl)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(crate) async fn h_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::OwnerOnly),
        )
        .await?;
        self.store
            .delete_bucket(&input.bucket)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(crate) async fn h_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::ListBucket),
        )
        .await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.options.region.clone()),
            ..Default::default()
        }))
    }

    pub(crate) async fn h_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::OwnerOnly),
        )
        .await?;
        // us-east-1 is reported as an empty LocationConstraint, as S3 does.
        let location = (self.options.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.options.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    /// The bucket's versioning status: absent for a bucket never configured.
    pub(crate) async fn h_get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        let status = access.bucket.versioning.map(|v| {
            BucketVersioningStatus::from_static(match v {
                Versioning::Enabled => BucketVersioningStatus::ENABLED,
                Versioning::Suspended => BucketVersioningStatus::SUSPENDED,
            })
        });
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    /// Enables or suspends versioning (a bucket never goes back to "never versioned", as in
    /// S3). MFA delete is not available. Gateway mode keeps every object as its key's `null`
    /// version and refuses it.
    pub(crate) async fn h_put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let config = input.versioning_configuration;
        if config
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(
                NotImplemented,
                "MFA delete is not available on this server"
            ));
        }
        let state = match config.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The XML you provided was not well-formed or did not validate against our published schema"
                ));
            }
        };
        if self.store.is_gateway() {
            return Err(s3_error!(
                NotImplemented,
                "Bucket versioning is not available in gateway mode"
            ));
        }
        // (Authorized before its body was read: `authorize_before_body`.)
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            move |b| b.versioning = Some(state),
        )
        .await?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_bucket_name;

    #[test]
    fn names() {
        for ok in ["abc", "my-bucket.data", "a1b", "x".repeat(63).as_str()] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            "x".repeat(64).as_str(),
            "abc-s3alias",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
