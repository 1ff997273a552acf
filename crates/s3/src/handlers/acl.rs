//! GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl.
//!
//! A new ACL comes as a canned ACL, `x-amz-grant-*` headers, or an `AccessControlPolicy`
//! body: exactly one of them (S3's rule).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Seedbucket;
use crate::access::Action;
use crate::access::acl::{self, GrantHeaders};
use crate::error::to_s3;

/// The three ways a PutBucketAcl/PutObjectAcl can state the new ACL.
struct NewAcl<'a> {
    canned: Option<&'a str>,
    headers: GrantHeaders<'a>,
    body: Option<&'a AccessControlPolicy>,
}

impl Seedbucket {
    fn new_acl(
        &self,
        acl: NewAcl<'_>,
        owner: &str,
        bucket_owner: &str,
    ) -> S3Result<Vec<seedbucket_store::Grant>> {
        let given = usize::from(acl.canned.is_some())
            + usize::from(!acl.headers.is_empty())
            + usize::from(acl.body.is_some());
        if given > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Specifying more than one of a canned ACL, grant headers and an ACL body is not allowed"
            ));
        }
        match acl.body {
            Some(body) => {
                let known = |id: &str| self.keys.by_user(id).is_some();
                Ok(acl::normalize(acl::from_xml(body, &known)?, owner))
            }
            None if given == 0 => Err(s3_error!(
                MissingSecurityHeader,
                "Your request was missing a required header"
            )),
            None => self.requested_acl(acl.canned, &acl.headers, owner, bucket_owner),
        }
    }

    fn acl_answer(&self, owner: &str, grants: &[seedbucket_store::Grant]) -> (Owner, Vec<Grant>) {
        let owner = self.owner_of(owner);
        let display = |id: &str| self.keys.by_user(id).map(|k| k.name);
        let list = acl::to_xml(&owner, grants, &display);
        (owner, list)
    }

    pub(crate) async fn h_get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::GetBucketAcl),
            )
            .await?;
        let (owner, grants) = self.acl_answer(&access.bucket.owner, &access.bucket.acl);
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants),
            owner: Some(owner),
        }))
    }

    pub(crate) async fn h_put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::PutBucketAcl),
            )
            .await?;
        let owner = access.bucket.owner.clone();
        let grants = self.new_acl(
            NewAcl {
                canned: input.acl.as_ref().map(|a| a.as_str()),
                headers: grant_headers!(input),
                body: input.access_control_policy.as_ref(),
            },
            &owner,
            &owner,
        )?;
        self.store
            .update_bucket(&input.bucket, move |b| {
                b.acl = grants;
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(crate) async fn h_get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = req.input;
        let (_, rec) = self
            .object_access(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.expected_bucket_owner.as_deref(),
                Action::GetObjectAcl,
            )
            .await?;
        let (owner, grants) = self.acl_answer(&rec.attributes.owner, &rec.attributes.acl);
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(grants),
            owner: Some(owner),
            request_charged: super::request_charged(input.request_payer.as_ref()),
        }))
    }

    pub(crate) async fn h_put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let input = req.input;
        let (access, rec) = self
            .object_access(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.expected_bucket_owner.as_deref(),
                Action::PutObjectAcl,
            )
            .await?;
        let grants = self.new_acl(
            NewAcl {
                canned: input.acl.as_ref().map(|a| a.as_str()),
                headers: grant_headers!(input),
                body: input.access_control_policy.as_ref(),
            },
            &rec.attributes.owner,
            &access.bucket.owner,
        )?;
        self.store
            .update_object(
                &input.bucket,
                &input.key,
                &rec.version,
                input.version_id.is_none(),
                move |r| {
                    r.attributes.acl = grants;
                    Ok(())
                },
            )
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(PutObjectAclOutput {
            request_charged: super::request_charged(input.request_payer.as_ref()),
        }))
    }
}
