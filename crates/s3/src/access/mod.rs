//! Who may do what: the one place requests are authorized.
//!
//! The order is S3's: an explicit Deny in the bucket policy refuses; otherwise the bucket
//! owner may do anything in its bucket (it controls every object in it, as S3 does with
//! Object Ownership "bucket owner enforced", while object ACLs still count for others);
//! otherwise a policy Allow or an ACL grant allows; otherwise AccessDenied. Configuration of
//! the bucket itself (policy, CORS, deletion) is the owner's alone. See docs/security.md.

pub mod acl;
pub mod policy;

use s3s::{S3Result, s3_error};
use seedbucket_store::credentials::{AccessKey, KeyRing};
use seedbucket_store::{BucketRecord, ObjectRecord, Permission, Which};

use crate::Seedbucket;
use crate::error::to_s3;
use policy::{Effect, Policy, Requester};

/// The operations whose body the codec reads whole into memory before they run.
const BUFFERED_BODY_OPERATIONS: &[&str] = &[
    "CompleteMultipartUpload",
    "CreateBucket",
    "CreateBucketMetadataTableConfiguration",
    "DeleteObjects",
    "PutBucketAccelerateConfiguration",
    "PutBucketAcl",
    "PutBucketAnalyticsConfiguration",
    "PutBucketCors",
    "PutBucketEncryption",
    "PutBucketIntelligentTieringConfiguration",
    "PutBucketInventoryConfiguration",
    "PutBucketLifecycleConfiguration",
    "PutBucketLogging",
    "PutBucketMetricsConfiguration",
    "PutBucketNotificationConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketReplication",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectLockConfiguration",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutPublicAccessBlock",
    "RestoreObject",
    "SelectObjectContent",
];

/// The sender of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    User(AccessKey),
}

impl Principal {
    /// Resolves the request's credentials (already verified by the signature check).
    pub fn of(keys: &KeyRing, credentials: Option<&s3s::auth::Credentials>) -> S3Result<Self> {
        match credentials {
            None => Ok(Self::Anonymous),
            Some(c) => keys
                .get(&c.access_key)
                .map(Self::User)
                .ok_or_else(|| s3_error!(InvalidAccessKeyId)),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(k) => Some(&k.user_id),
        }
    }

    fn requester(&self) -> Option<Requester<'_>> {
        match self {
            Self::Anonymous => None,
            Self::User(k) => Some(Requester {
                access_key: &k.access_key,
                user_id: &k.user_id,
            }),
        }
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// ListObjects, HeadBucket, ListMultipartUploads.
    ListBucket,
    /// ListObjectVersions: READ on the bucket, `s3:ListBucketVersions` in a policy.
    ListBucketVersions,
    /// GetObject, HeadObject, GetObjectAttributes.
    GetObject,
    /// GetObjectTorrent: READ, as GetObject.
    GetObjectTorrent,
    /// PutObject, multipart uploads, the destination of a copy.
    PutObject,
    DeleteObject,
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
    GetObjectTagging,
    PutObjectTagging,
    /// Bucket configuration (policy, CORS, location, versioning, deletion): owner only.
    OwnerOnly,
}

impl Action {
    /// The policy action names that govern this action.
    fn policy_names(self) -> &'static [&'static str] {
        match self {
            Action::ListBucket => &["s3:ListBucket"],
            Action::ListBucketVersions => &["s3:ListBucketVersions"],
            Action::GetObject => &["s3:GetObject"],
            Action::GetObjectTorrent => &["s3:GetObject", "s3:GetObjectTorrent"],
            Action::PutObject => &["s3:PutObject"],
            Action::DeleteObject => &["s3:DeleteObject"],
            Action::GetBucketAcl => &["s3:GetBucketAcl"],
            Action::PutBucketAcl => &["s3:PutBucketAcl"],
            Action::GetObjectAcl => &["s3:GetObjectAcl"],
            Action::PutObjectAcl => &["s3:PutObjectAcl"],
            Action::GetObjectTagging => &["s3:GetObjectTagging"],
            Action::PutObjectTagging => &["s3:PutObjectTagging", "s3:DeleteObjectTagging"],
            Action::OwnerOnly => &[],
        }
    }

    /// The policy action names that allow it on a version named by id.
    fn version_policy_names(self) -> &'static [&'static str] {
        match self {
            Action::GetObject => &["s3:GetObjectVersion"],
            Action::GetObjectTorrent => &["s3:GetObjectVersion", "s3:GetObjectVersionTorrent"],
            Action::DeleteObject => &["s3:DeleteObjectVersion"],
            Action::GetObjectAcl => &["s3:GetObjectVersionAcl"],
            Action::PutObjectAcl => &["s3:PutObjectVersionAcl"],
            Action::GetObjectTagging => &["s3:GetObjectVersionTagging"],
            Action::PutObjectTagging => &[
                "s3:PutObjectVersionTagging",
                "s3:DeleteObjectVersionTagging",
            ],
            other => other.policy_names(),
        }
    }

    /// The ACL permission that allows it, and whether on the object (else on the bucket).
    fn acl_permission(self) -> Option<(Permission, bool)> {
        match self {
            Action::ListBucket | Action::ListBucketVersions => Some((Permission::Read, false)),
            Action::PutObject | Action::DeleteObject => Some((Permission::Write, false)),
            Action::GetBucketAcl => Some((Permission::ReadAcp, false)),
            Action::PutBucketAcl => Some((Permission::WriteAcp, false)),
            Action::GetObject | Action::GetObjectTorrent => Some((Permission::Read, true)),
            Action::GetObjectAcl => Some((Permission::ReadAcp, true)),
            Action::PutObjectAcl => Some((Permission::WriteAcp, true)),
            Action::GetObjectTagging | Action::PutObjectTagging | Action::OwnerOnly => None,
        }
    }

    fn on_object(self) -> bool {
        matches!(
            self,
            Action::GetObject
                | Action::GetObjectTorrent
                | Action::PutObject
                | Action::DeleteObject
                | Action::GetObjectAcl
                | Action::PutObjectAcl
                | Action::GetObjectTagging
                | Action::PutObjectTagging
        )
    }
}

/// A request's principal and the bucket it addresses, ready to authorize actions.
pub struct Access {
    pub principal: Principal,
    pub bucket: BucketRecord,
    policy: Option<Policy>,
}

impl Access {
    pub fn new(principal: Principal, bucket: BucketRecord) -> Self {
        // A stored policy was validated when it was put; one that no longer parses (it
        // cannot, short of a corrupt record) grants nothing.
        let policy = bucket
            .policy
            .as_deref()
            .and_then(|text| Policy::parse(text, &bucket.name).ok());
        Self {
            principal,
            bucket,
            policy,
        }
    }

    /// The bucket's owner, or an administrator (who manages every bucket as its owner would).
    pub fn is_bucket_owner(&self) -> bool {
        self.principal.user_id() == Some(self.bucket.owner.as_str())
            || matches!(&self.principal, Principal::User(k) if k.is_admin())
    }

    /// Whether `action` is allowed; `key` names the object for object actions and `object`
    /// is its current record if it exists (its ACL counts).
    pub fn allows(&self, action: Action, key: Option<&str>, object: Option<&ObjectRecord>) -> bool {
        self.allows_at(action, key, object, Which::Current)
    }

    /// [`Access::allows`] for a request that may name a version: a policy then matches the
    /// version actions (`s3:GetObjectVersion`, `s3:DeleteObjectVersion`, ...), as in S3.
    pub fn allows_at(
        &self,
        action: Action,
        key: Option<&str>,
        object: Option<&ObjectRecord>,
        which: Which<'_>,
    ) -> bool {
        let names = match which {
            Which::VersionId(_) => action.version_policy_names(),
            Which::Current | Which::Exact(_) => action.policy_names(),
        };
        let resource = match (action.on_object(), key) {
            (true, Some(k)) => format!("arn:aws:s3:::{}/{k}", self.bucket.name),
            _ => format!("arn:aws:s3:::{}", self.bucket.name),
        };
        let verdict = self
            .policy
            .as_ref()
            .and_then(|p| p.evaluate(self.principal.requester(), names, &resource));
        if verdict == Some(Effect::Deny) {
            return false;
        }
        if self.is_bucket_owner() {
            return true;
        }
        if action == Action::OwnerOnly {
            return false;
        }
        if verdict == Some(Effect::Allow) {
            return true;
        }
        let user = self.principal.user_id();
        let object_level = matches!(action.acl_permission(), Some((_, true)) | None);
        if let Some(rec) = object
            && action.on_object()
            && object_level
            && user == Some(rec.attributes.owner.as_str())
        {
            // An object's owner has full control of the object itself; writing and deleting
            // keys are the bucket's WRITE, as in S3.
            return true;
        }
        match action.acl_permission() {
            Some((permission, true)) => object
                .is_some_and(|rec| acl::grants_permission(&rec.attributes.acl, user, permission)),
            Some((permission, false)) => acl::grants_permission(&self.bucket.acl, user, permission),
            None => false,
        }
    }

    /// AccessDenied unless `action` is allowed.
    pub fn require(
        &self,
        action: Action,
        key: Option<&str>,
        object: Option<&ObjectRecord>,
    ) -> S3Result<()> {
        self.require_at(action, key, object, Which::Current)
    }

    /// AccessDenied unless `action` is allowed on the version `which` names.
    pub fn require_at(
        &self,
        action: Action,
        key: Option<&str>,
        object: Option<&ObjectRecord>,
        which: Which<'_>,
    ) -> S3Result<()> {
        if self.allows_at(action, key, object, which) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Access Denied"))
        }
    }

    /// The error for an object that does not exist: NoSuchKey to callers who may list the
    /// bucket, AccessDenied to others (so that existence does not leak), as S3 does.
    pub fn missing_object(&self, key: &str) -> s3s::S3Error {
        if self.allows(Action::ListBucket, Some(key), None) {
            s3_error!(NoSuchKey)
        } else {
            s3_error!(AccessDenied, "Access Denied")
        }
    }

    /// Whether an anonymous caller could be allowed to delete some key of the bucket (an ACL
    /// granting everyone WRITE, or a policy allowing anyone something): the check a
    /// DeleteObjects body must pass before it is read, each key being checked after.
    fn anonymous_might_delete(&self) -> bool {
        acl::grants_permission(&self.bucket.acl, None, Permission::Write)
            || self.policy.as_ref().is_some_and(Policy::grants_anonymous)
    }

    /// Whether anonymous callers may read this version of the object (named as `which` names
    /// it): its torrent is then public.
    pub fn anonymous_may_read_at(
        &self,
        key: &str,
        object: &ObjectRecord,
        which: Which<'_>,
    ) -> bool {
        let anonymous = Access {
            principal: Principal::Anonymous,
            bucket: self.bucket.clone(),
            policy: self.policy.clone(),
        };
        anonymous.allows_at(Action::GetObject, Some(key), Some(object), which)
    }
}

impl Seedbucket {
    /// Resolves the caller and the bucket, checks `x-amz-expected-bucket-owner`, and
    /// authorizes a bucket-level `action` (object actions are checked by the handler once
    /// it has the object's record: [`Access::require`]).
    pub(crate) async fn bucket_access(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        expected_owner: Option<&str>,
        action: Option<Action>,
    ) -> S3Result<Access> {
        let principal = Principal::of(&self.keys, credentials)?;
        let rec = self.store.bucket(bucket).await.map_err(to_s3)?;
        if let Some(expected) = expected_owner
            && expected != rec.owner
        {
            return Err(s3_error!(
                AccessDenied,
                "The expected bucket owner does not match"
            ));
        }
        let access = Access::new(principal, rec);
        if let Some(action) = action {
            access.require(action, None, None)?;
        }
        Ok(access)
    }

    /// For writes and deletes by key: checks the key, resolves the bucket and authorizes
    /// `action` on `bucket/key` (which need not exist yet).
    pub(crate) async fn key_access(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        key: &str,
        expected_owner: Option<&str>,
        action: Action,
    ) -> S3Result<Access> {
        self.key_access_at(
            credentials,
            bucket,
            key,
            expected_owner,
            action,
            Which::Current,
        )
        .await
    }

    /// [`Seedbucket::key_access`] for a request that may name a version (DELETE with
    /// `versionId`: `s3:DeleteObjectVersion` in a policy).
    pub(crate) async fn key_access_at(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        key: &str,
        expected_owner: Option<&str>,
        action: Action,
        which: Which<'_>,
    ) -> S3Result<Access> {
        crate::handlers::object::check_key(key)?;
        let access = self
            .bucket_access(credentials, bucket, expected_owner, None)
            .await?;
        access.require_at(action, Some(key), None, which)?;
        Ok(access)
    }

    /// For calls on an existing object (ACL, tags, attributes): checks the key and the
    /// version id, resolves the bucket, and reads the record the action is allowed on.
    pub(crate) async fn object_access(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        expected_owner: Option<&str>,
        action: Action,
    ) -> S3Result<(Access, ObjectRecord)> {
        crate::handlers::object::check_key(key)?;
        let which = crate::handlers::which_version(version_id)?;
        let access = self
            .bucket_access(credentials, bucket, expected_owner, None)
            .await?;
        let rec = self.object_at_for(&access, key, action, which).await?;
        if rec.delete_marker {
            return Err(crate::handlers::delete_marker_named(&rec));
        }
        Ok((access, rec))
    }

    /// Authorizes an operation whose body is read whole into memory, from its head alone and
    /// before the body is read: the same check its handler makes first, where it needs no
    /// body (owner-only configuration, ACL and tag changes, completing an upload, creating a
    /// bucket), and for DeleteObjects (each key is checked after) whether the caller could
    /// be allowed any delete at all. Operations that stream their body pass.
    pub(crate) async fn authorize_before_body(
        &self,
        op: &str,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: Option<&str>,
        key: Option<&str>,
    ) -> S3Result<()> {
        if op == "CreateBucket" {
            crate::auth::caller(&self.keys, credentials)?;
            return Ok(());
        }
        if !BUFFERED_BODY_OPERATIONS.contains(&op) {
            return Ok(());
        }
        let Some(bucket) = bucket else {
            return Ok(());
        };
        match (op, key) {
            ("PutBucketAcl", _) => {
                self.bucket_access(credentials, bucket, None, Some(Action::PutBucketAcl))
                    .await?;
            }
            ("PutObjectAcl" | "PutObjectTagging", Some(key)) => {
                let action = if op == "PutObjectAcl" {
                    Action::PutObjectAcl
                } else {
                    Action::PutObjectTagging
                };
                let access = self.bucket_access(credentials, bucket, None, None).await?;
                self.object_for(&access, key, action).await?;
            }
            ("CompleteMultipartUpload", Some(key)) => {
                self.key_access(credentials, bucket, key, None, Action::PutObject)
                    .await?;
            }
            ("DeleteObjects", _) => {
                let access = self.bucket_access(credentials, bucket, None, None).await?;
                if matches!(access.principal, Principal::Anonymous)
                    && !access.anonymous_might_delete()
                {
                    return Err(s3_error!(AccessDenied, "Access Denied"));
                }
            }
            // Any other configuration of the bucket or an object: the bucket owner's.
            _ => {
                self.bucket_access(credentials, bucket, None, Some(Action::OwnerOnly))
                    .await?;
            }
        }
        Ok(())
    }

    /// Reads an object's record for an object action: the record if the action is allowed,
    /// NoSuchKey or AccessDenied (see [`Access::missing_object`]) if it does not exist.
    pub(crate) async fn object_for(
        &self,
        access: &Access,
        key: &str,
        action: Action,
    ) -> S3Result<ObjectRecord> {
        self.object_at_for(access, key, action, Which::Current)
            .await
    }

    /// [`Seedbucket::object_for`] for the version `which` names (which may be a delete marker:
    /// the caller decides what that means for its operation).
    pub(crate) async fn object_at_for(
        &self,
        access: &Access,
        key: &str,
        action: Action,
        which: Which<'_>,
    ) -> S3Result<ObjectRecord> {
        match self
            .store
            .head_object_at(&access.bucket.name, key, which)
            .await
        {
            Ok(rec) => {
                access.require_at(action, Some(key), Some(&rec), which)?;
                Ok(rec)
            }
            Err(e) => Err(self.missing_version(access, key, e).await),
        }
    }
}
