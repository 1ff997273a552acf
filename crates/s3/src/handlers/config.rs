//! Bucket configuration kept in the bucket record: policy (Get/Put/DeleteBucketPolicy,
//! GetBucketPolicyStatus) and CORS (Get/Put/DeleteBucketCors). Both are the owner's alone.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::CorsRule;

use crate::Seedbucket;
use crate::access::Action;
use crate::access::policy::Policy;
use crate::error::to_s3;

/// Most CORS rules a bucket may have (S3's limit).
const MAX_CORS_RULES: usize = 100;
const CORS_METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];

impl Seedbucket {
    pub(crate) async fn h_get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        let policy = access
            .bucket
            .policy
            .clone()
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    pub(crate) async fn h_put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::OwnerOnly),
        )
        .await?;
        Policy::parse(&input.policy, &input.bucket)
            .map_err(|e| s3_error!(MalformedPolicy, "{e}"))?;
        let text = input.policy;
        self.store
            .update_bucket(&input.bucket, move |b| {
                b.policy = Some(text);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        let mut resp = S3Response::new(PutBucketPolicyOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn h_delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let input = req.input;
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            |b| b.policy = None,
        )
        .await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    pub(crate) async fn h_get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        let policy = access
            .bucket
            .policy
            .as_deref()
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        // Public: the policy lets anonymous callers read or list something.
        let public = Policy::parse(policy, &access.bucket.name)
            .map(|p| p.grants_anonymous())
            .unwrap_or(false);
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(public),
            }),
        }))
    }

    pub(crate) async fn h_get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        if access.bucket.cors.is_empty() {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        }
        let rules = access
            .bucket
            .cors
            .iter()
            .map(|r| CORSRule {
                allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
                allowed_methods: r.allowed_methods.clone(),
                allowed_origins: r.allowed_origins.clone(),
                expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
                id: r.id.clone(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules),
        }))
    }

    pub(crate) async fn h_put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::OwnerOnly),
        )
        .await?;
        let rules = input.cors_configuration.cors_rules;
        if rules.is_empty() || rules.len() > MAX_CORS_RULES {
            return Err(s3_error!(
                MalformedXML,
                "A CORS configuration has 1 to 100 rules"
            ));
        }
        let mut stored = Vec::with_capacity(rules.len());
        for r in rules {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "Each CORS rule needs an AllowedOrigin and an AllowedMethod"
                ));
            }
            for m in &r.allowed_methods {
                if !CORS_METHODS.contains(&m.as_str()) {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ));
                }
            }
            for o in &r.allowed_origins {
                if o.matches('*').count() > 1 {
                    return Err(s3_error!(
                        InvalidRequest,
                        "AllowedOrigin \"{o}\" can not have more than one wildcard."
                    ));
                }
            }
            stored.push(CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            });
        }
        self.store
            .update_bucket(&input.bucket, move |b| {
                b.cors = stored;
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    pub(crate) async fn h_delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let input = req.input;
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            |b| b.cors.clear(),
        )
        .await?;
        Ok(no_content(DeleteBucketCorsOutput {}))
    }
}

/// The one default encryption rule this server can apply: SSE-S3.
fn sse_s3_rule() -> ServerSideEncryptionRule {
    ServerSideEncryptionRule {
        apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
            kms_master_key_id: None,
            sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
        }),
        bucket_key_enabled: Some(false),
    }
}

impl Seedbucket {
    /// GetBucketEncryption: the SSE-S3 default if it is on; otherwise S3's 404 from before every
    /// bucket was encrypted by default (seedbucket does not encrypt unless asked).
    pub(crate) async fn h_get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                Some(Action::OwnerOnly),
            )
            .await?;
        if !access.bucket.default_sse_s3 {
            return Err(crate::error::with_status(
                "ServerSideEncryptionConfigurationNotFoundError",
                "The server side encryption configuration was not found",
                http::StatusCode::NOT_FOUND,
            ));
        }
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![sse_s3_rule()],
            }),
        }))
    }

    /// PutBucketEncryption: one rule applying AES256 (SSE-S3) by default. `aws:kms` is refused
    /// (there is no KMS); the bucket key setting is accepted and means nothing here.
    pub(crate) async fn h_put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::OwnerOnly),
        )
        .await?;
        let rules = &input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "An encryption configuration has exactly one rule"
            ));
        };
        let Some(default) = &rule.apply_server_side_encryption_by_default else {
            return Err(s3_error!(
                MalformedXML,
                "The rule needs ApplyServerSideEncryptionByDefault"
            ));
        };
        super::wants_sse_s3(Some(&default.sse_algorithm), None, false)?;
        self.store
            .update_bucket(&input.bucket, |b| {
                b.default_sse_s3 = true;
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(PutBucketEncryptionOutput {}))
    }

    /// DeleteBucketEncryption: new writes are stored as sent unless they ask for encryption.
    pub(crate) async fn h_delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let input = req.input;
        self.change_config(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            |b| b.default_sse_s3 = false,
        )
        .await?;
        Ok(no_content(DeleteBucketEncryptionOutput {}))
    }
}

impl Seedbucket {
    /// A bucket configuration change, already checked (or needing none): the owner only.
    pub(crate) async fn change_config(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        expected_owner: Option<&str>,
        change: impl FnOnce(&mut seedbucket_store::BucketRecord) + Send + 'static,
    ) -> S3Result<()> {
        self.bucket_access(credentials, bucket, expected_owner, Some(Action::OwnerOnly))
            .await?;
        self.store
            .update_bucket(bucket, move |b| {
                change(b);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(())
    }
}

/// A 204 answer, as S3 gives to these deletions.
pub(crate) fn no_content<T>(out: T) -> S3Response<T> {
    let mut resp = S3Response::new(out);
    resp.status = Some(http::StatusCode::NO_CONTENT);
    resp
}
