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

/// Lets every request, signed or anonymous, reach its handler: the handlers authorize with
/// ACLs and policies (`crate::access`), which s3s's default check (anonymous = denied) cannot.
pub struct HandlersDecide;

#[async_trait::async_trait]
impl s3s::access::S3Access for HandlersDecide {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}
