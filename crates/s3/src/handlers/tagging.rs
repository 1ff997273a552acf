//! PutObjectTagging, GetObjectTagging, DeleteObjectTagging: tags live in the object's record
//! and change without touching its bytes or its version.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::object::check_key;
use super::{validate_tags, version_header, which_version};
use crate::Seedbucket;
use crate::access::Action;
use crate::error::to_s3;

impl Seedbucket {
    pub(crate) async fn h_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let (access, rec) = self
            .object_access(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.expected_bucket_owner.as_deref(),
                Action::GetObjectTagging,
            )
            .await?;
        let version_id = version_header(
            &access.bucket,
            &rec,
            which_version(input.version_id.as_deref())?,
        );
        let tag_set = rec
            .attributes
            .tags
            .into_iter()
            .map(|(key, value)| Tag {
                key: Some(key),
                value: Some(value),
            })
            .collect();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id,
        }))
    }

    pub(crate) async fn h_put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        which_version(input.version_id.as_deref())?;
        let tags = validate_tags(
            input
                .tagging
                .tag_set
                .into_iter()
                .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())),
        )?;
        let version_id = self
            .change_tags(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.expected_bucket_owner.as_deref(),
                input.version_id.as_deref(),
                tags,
            )
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    pub(crate) async fn h_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        which_version(input.version_id.as_deref())?;
        let version_id = self
            .change_tags(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.expected_bucket_owner.as_deref(),
                input.version_id.as_deref(),
                Default::default(),
            )
            .await?;
        let mut resp = S3Response::new(DeleteObjectTaggingOutput { version_id });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    /// Replaces the tags of the current object or of the version named; returns the version
    /// id to answer with.
    async fn change_tags(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        key: &str,
        expected_owner: Option<&str>,
        version_id: Option<&str>,
        tags: std::collections::BTreeMap<String, String>,
    ) -> S3Result<Option<String>> {
        let (access, rec) = self
            .object_access(
                credentials,
                bucket,
                key,
                version_id,
                expected_owner,
                Action::PutObjectTagging,
            )
            .await?;
        self.store
            .update_object(bucket, key, &rec.version, version_id.is_none(), move |r| {
                r.attributes.tags = tags;
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(version_header(
            &access.bucket,
            &rec,
            which_version(version_id)?,
        ))
    }
}
