//! Signature keys for s3s from the data dir's key file, and the caller's identity.

use std::sync::Arc;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};
use seedbucket_store::credentials::{AccessKey, KeyRing};

/// Looks up secrets for SigV4 verification (s3s compares signatures in constant time).
pub struct KeyRingAuth(pub Arc<KeyRing>);

#[async_trait::async_trait]
impl S3Auth for KeyRingAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.get(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret_key)),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// Who made a request: the key it was signed with.
pub fn caller(keys: &KeyRing, credentials: Option<&s3s::auth::Credentials>) -> S3Result<AccessKey> {
    let c =
        credentials.ok_or_else(|| s3_error!(AccessDenied, "Anonymous access is not allowed"))?;
    keys.get(&c.access_key)
        .ok_or_else(|| s3_error!(InvalidAccessKeyId))
}

/// The codec's access hook, run after the signature is verified and before a body is read:
/// an operation whose body is buffered whole (configuration XML, DeleteObjects,
/// CompleteMultipartUpload) must first pass the authorization its handler would make
/// ([`crate::Seedbucket::authorize_before_body`]), so an unauthorized caller cannot make
/// the server read and hold its body. Everything else reaches its handler, which authorizes
/// with ACLs and policies (`crate::access`); s3s's default check (anonymous = denied) would
/// refuse what those allow.
pub struct BeforeBody(pub crate::Seedbucket);

#[async_trait::async_trait]
impl s3s::access::S3Access for BeforeBody {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let path = cx.s3_path();
        self.0
            .authorize_before_body(
                cx.s3_op().name(),
                cx.credentials(),
                path.get_bucket_name(),
                path.get_object_key(),
            )
            .await
    }
}
