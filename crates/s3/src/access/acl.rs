//! ACLs: canned ACLs, `x-amz-grant-*` headers and the `AccessControlPolicy` XML, turned into
//! the stored grant list and back.
//!
//! The stored list holds the grants beyond the owner's own FULL_CONTROL, which is implicit
//! (an owner can never lock itself out); answers list the owner's grant first, as S3 does.

use s3s::dto;
use s3s::{S3Result, s3_error};
use seedbucket_store::{Grant, Grantee, Permission};

pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS_URI: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The grants of a canned ACL (`x-amz-acl`). `bucket_owner` matters for the two
/// `bucket-owner-*` object ACLs; `owner` is the resource's own owner.
pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> S3Result<Vec<Grant>> {
    let g = |grantee: Grantee, permission: Permission| Grant {
        grantee,
        permission,
    };
    Ok(match name {
        "private" | "aws-exec-read" => Vec::new(),
        "public-read" => vec![g(Grantee::AllUsers, Permission::Read)],
        "public-read-write" => vec![
            g(Grantee::AllUsers, Permission::Read),
            g(Grantee::AllUsers, Permission::Write),
        ],
        "authenticated-read" => vec![g(Grantee::AuthenticatedUsers, Permission::Read)],
        "bucket-owner-read" if bucket_owner != owner => {
            vec![g(Grantee::User(bucket_owner.to_owned()), Permission::Read)]
        }
        "bucket-owner-full-control" if bucket_owner != owner => {
            vec![g(
                Grantee::User(bucket_owner.to_owned()),
                Permission::FullControl,
            )]
        }
        "bucket-owner-read" | "bucket-owner-full-control" => Vec::new(),
        "log-delivery-write" => vec![
            g(Grantee::LogDelivery, Permission::Write),
            g(Grantee::LogDelivery, Permission::ReadAcp),
        ],
        other => {
            return Err(s3_error!(InvalidArgument, "Invalid canned ACL: {other}"));
        }
    })
}

/// The `x-amz-grant-*` header values of a request.
#[derive(Default)]
pub struct GrantHeaders<'a> {
    pub read: Option<&'a str>,
    pub write: Option<&'a str>,
    pub read_acp: Option<&'a str>,
    pub write_acp: Option<&'a str>,
    pub full_control: Option<&'a str>,
}

impl GrantHeaders<'_> {
    pub fn is_empty(&self) -> bool {
        self.read.is_none()
            && self.write.is_none()
            && self.read_acp.is_none()
            && self.write_acp.is_none()
            && self.full_control.is_none()
    }

    /// Parses `id="…"`, `uri="…"` lists (`emailAddress` cannot be resolved here).
    pub fn grants(&self, known_user: &dyn Fn(&str) -> bool) -> S3Result<Vec<Grant>> {
        let mut out = Vec::new();
        for (value, permission) in [
            (self.read, Permission::Read),
            (self.write, Permission::Write),
            (self.read_acp, Permission::ReadAcp),
            (self.write_acp, Permission::WriteAcp),
            (self.full_control, Permission::FullControl),
        ] {
            let Some(value) = value else { continue };
            for item in value.split(',') {
                let item = item.trim();
                let (kind, raw) = item.split_once('=').ok_or_else(|| {
                    s3_error!(InvalidArgument, "Invalid grant header value: {item}")
                })?;
                let v = raw.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => user_grantee(v, known_user)?,
                    "uri" => group_grantee(v)?,
                    "emailaddress" => return Err(s3_error!(UnresolvableGrantByEmailAddress)),
                    _ => {
                        return Err(s3_error!(
                            InvalidArgument,
                            "Invalid grant header value: {item}"
                        ));
                    }
                };
                out.push(Grant {
                    grantee,
                    permission,
                });
            }
        }
        Ok(out)
    }
}

fn user_grantee(id: &str, known_user: &dyn Fn(&str) -> bool) -> S3Result<Grantee> {
    if known_user(id) {
        Ok(Grantee::User(id.to_owned()))
    } else {
        Err(s3_error!(InvalidArgument, "Invalid id"))
    }
}

fn group_grantee(uri: &str) -> S3Result<Grantee> {
    match uri {
        ALL_USERS_URI => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS_URI => Ok(Grantee::AuthenticatedUsers),
        LOG_DELIVERY_URI => Ok(Grantee::LogDelivery),
        _ => Err(s3_error!(InvalidArgument, "Invalid group uri")),
    }
}

/// The grants of an `AccessControlPolicy` body.
pub fn from_xml(
    policy: &dto::AccessControlPolicy,
    known_user: &dyn Fn(&str) -> bool,
) -> S3Result<Vec<Grant>> {
    let mut out = Vec::new();
    for g in policy.grants.iter().flatten() {
        let (Some(grantee), Some(permission)) = (&g.grantee, &g.permission) else {
            return Err(s3_error!(MalformedACLError));
        };
        let permission = match permission.as_str() {
            dto::Permission::READ => Permission::Read,
            dto::Permission::WRITE => Permission::Write,
            dto::Permission::READ_ACP => Permission::ReadAcp,
            dto::Permission::WRITE_ACP => Permission::WriteAcp,
            dto::Permission::FULL_CONTROL => Permission::FullControl,
            _ => return Err(s3_error!(MalformedACLError)),
        };
        let grantee = match grantee.type_.as_str() {
            dto::Type::CANONICAL_USER => {
                let id = grantee
                    .id
                    .as_deref()
                    .ok_or_else(|| s3_error!(MalformedACLError))?;
                user_grantee(id, known_user)?
            }
            dto::Type::GROUP => group_grantee(
                grantee
                    .uri
                    .as_deref()
                    .ok_or_else(|| s3_error!(MalformedACLError))?,
            )?,
            dto::Type::AMAZON_CUSTOMER_BY_EMAIL => {
                return Err(s3_error!(UnresolvableGrantByEmailAddress));
            }
            _ => return Err(s3_error!(MalformedACLError)),
        };
        out.push(Grant {
            grantee,
            permission,
        });
    }
    Ok(out)
}

/// Drops the owner's own FULL_CONTROL (implicit) and duplicates.
pub fn normalize(grants: Vec<Grant>, owner: &str) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for g in grants {
        let owners_own = g.permission == Permission::FullControl
            && matches!(&g.grantee, Grantee::User(id) if id == owner);
        if !owners_own && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// The grant list an ACL answer shows: the owner's FULL_CONTROL, then the stored grants.
pub fn to_xml(
    owner: &dto::Owner,
    grants: &[Grant],
    display_name: &dyn Fn(&str) -> Option<String>,
) -> Vec<dto::Grant> {
    let user = |id: &str| dto::Grantee {
        display_name: display_name(id),
        email_address: None,
        id: Some(id.to_owned()),
        type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
        uri: None,
    };
    let group = |uri: &str| dto::Grantee {
        display_name: None,
        email_address: None,
        id: None,
        type_: dto::Type::from_static(dto::Type::GROUP),
        uri: Some(uri.to_owned()),
    };
    let mut out = vec![dto::Grant {
        grantee: Some(user(owner.id.as_deref().unwrap_or_default())),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    }];
    for g in grants {
        let grantee = match &g.grantee {
            Grantee::User(id) => user(id),
            Grantee::AllUsers => group(ALL_USERS_URI),
            Grantee::AuthenticatedUsers => group(AUTHENTICATED_USERS_URI),
            Grantee::LogDelivery => group(LOG_DELIVERY_URI),
        };
        let permission = match g.permission {
            Permission::Read => dto::Permission::READ,
            Permission::Write => dto::Permission::WRITE,
            Permission::ReadAcp => dto::Permission::READ_ACP,
            Permission::WriteAcp => dto::Permission::WRITE_ACP,
            Permission::FullControl => dto::Permission::FULL_CONTROL,
        };
        out.push(dto::Grant {
            grantee: Some(grantee),
            permission: Some(dto::Permission::from_static(permission)),
        });
    }
    out
}

/// Whether the grants give `wanted` to the requester (`None`: anonymous).
pub fn grants_permission(grants: &[Grant], user_id: Option<&str>, wanted: Permission) -> bool {
    grants.iter().any(|g| {
        g.permission.covers(wanted)
            && match (&g.grantee, user_id) {
                (Grantee::AllUsers, _) => true,
                (Grantee::AuthenticatedUsers, Some(_)) => true,
                (Grantee::User(id), Some(u)) => id == u,
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_public_read(grants: &[Grant]) -> bool {
        grants_permission(grants, None, Permission::Read)
    }

    #[test]
    fn canned_acls() {
        assert!(canned("private", "o", "o").unwrap().is_empty());
        assert!(is_public_read(&canned("public-read", "o", "o").unwrap()));
        let auth = canned("authenticated-read", "o", "o").unwrap();
        assert!(!is_public_read(&auth));
        assert!(grants_permission(&auth, Some("x"), Permission::Read));
        assert_eq!(
            canned("bucket-owner-full-control", "w", "b").unwrap(),
            vec![Grant {
                grantee: Grantee::User("b".into()),
                permission: Permission::FullControl
            }]
        );
        assert!(canned("nonsense", "o", "o").is_err());
    }

    #[test]
    fn grant_headers() {
        let known = |id: &str| id == "u1";
        let h = GrantHeaders {
            read: Some(r#"uri="http://acs.amazonaws.com/groups/global/AllUsers", id="u1""#),
            ..Default::default()
        };
        let g = h.grants(&known).unwrap();
        assert_eq!(g.len(), 2);
        assert!(is_public_read(&g));
        let bad = GrantHeaders {
            read: Some(r#"id="nobody""#),
            ..Default::default()
        };
        assert!(bad.grants(&known).is_err());
        let email = GrantHeaders {
            write: Some(r#"emailAddress="a@b.c""#),
            ..Default::default()
        };
        assert!(email.grants(&known).is_err());
    }
}
