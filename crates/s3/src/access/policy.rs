//! Bucket policies: the subset of the IAM policy language people use on S3 buckets.
//!
//! Supported: `Version`, `Id`, and statements with `Sid`, `Effect` (Allow/Deny), `Principal`
//! (`"*"`, `{"AWS": …}`, `{"CanonicalUser": …}`), `Action` (the actions of [`ACTIONS`], with `*`
//! and `?` wildcards) and `Resource` (ARNs of this bucket or its objects, with wildcards).
//! Everything else (`Condition`, `NotAction`, `NotPrincipal`, `NotResource`, unknown actions)
//! is refused with `MalformedPolicy` when the policy is put, never silently ignored.
//! Parsing is separate from evaluation, and both are pure.

use serde_json::Value;

/// The actions a policy may name (S3's names; matched case-insensitively).
pub const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectTorrent",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:GetBucketAcl",
    "s3:PutBucketAcl",
    "s3:GetObjectAcl",
    "s3:PutObjectAcl",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
    "s3:DeleteObjectTagging",
    "s3:ListBucketVersions",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionTorrent",
    "s3:DeleteObjectVersion",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectVersionTagging",
];

/// Largest policy document S3 accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    Anyone,
    /// Access key ids, canonical user ids or `arn:aws:iam::<id>:root`.
    Ids(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    effect: Effect,
    principals: Principals,
    /// Lower-cased action patterns.
    actions: Vec<String>,
    resources: Vec<String>,
}

/// A validated bucket policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// Who is asking, as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub access_key: &'a str,
    pub user_id: &'a str,
}

/// Why a policy was refused; the text becomes the `MalformedPolicy` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// `*` matches any run of characters, `?` any one; everything else literally.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    pi = bp + 1;
                    ti = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => err(format!("{field} must be a string or a list of strings")),
            })
            .collect(),
        _ => err(format!("{field} must be a string or a list of strings")),
    }
}

fn principals(v: &Value) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(map) if !map.is_empty() => {
            let mut ids = Vec::new();
            for (kind, value) in map {
                if kind != "AWS" && kind != "CanonicalUser" {
                    return err(format!("Unsupported principal type {kind}"));
                }
                for id in strings(value, "Principal")? {
                    if id == "*" {
                        return Ok(Principals::Anyone);
                    }
                    ids.push(id);
                }
            }
            Ok(Principals::Ids(ids))
        }
        _ => err("Invalid principal in policy"),
    }
}

impl Policy {
    /// Parses and validates a policy document for `bucket`.
    pub fn parse(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return err("Policies must be no larger than 20 KB");
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError(format!("Policies must be valid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return err("Policies must be a JSON object");
        };
        let mut statements = None;
        for (k, v) in &doc {
            match k.as_str() {
                "Version" => match v.as_str() {
                    Some("2012-10-17" | "2008-10-17") => {}
                    _ => return err("The policy language version is not supported"),
                },
                "Id" => {}
                "Statement" => statements = Some(v),
                other => return err(format!("Unknown field {other}")),
            }
        }
        let list: Vec<&Value> = match statements {
            Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => return err("Missing required field Statement"),
        };
        let statements = list
            .into_iter()
            .map(|s| Statement::parse(s, bucket))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { statements })
    }

    /// The effect of the policy on `action` (one of [`ACTIONS`], any case) over `resource`
    /// (an ARN) for `requester` (`None`: anonymous): `Some(Deny)` if any statement denies,
    /// else `Some(Allow)` if any allows, else `None`.
    pub fn evaluate(
        &self,
        requester: Option<Requester<'_>>,
        actions: &[&str],
        resource: &str,
    ) -> Option<Effect> {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(requester, actions, resource) {
                match s.effect {
                    Effect::Deny => return Some(Effect::Deny),
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed.then_some(Effect::Allow)
    }
}

impl Policy {
    /// Whether some statement allows anonymous callers anything (GetBucketPolicyStatus).
    pub fn grants_anonymous(&self) -> bool {
        self.statements
            .iter()
            .any(|s| s.effect == Effect::Allow && s.principals == Principals::Anyone)
    }
}

impl Statement {
    fn parse(v: &Value, bucket: &str) -> Result<Self, PolicyError> {
        let Value::Object(map) = v else {
            return err("Each statement must be a JSON object");
        };
        let (mut effect, mut principal, mut actions, mut resources) = (None, None, None, None);
        for (k, v) in map {
            match k.as_str() {
                "Sid" => {}
                "Effect" => {
                    effect = Some(match v.as_str() {
                        Some("Allow") => Effect::Allow,
                        Some("Deny") => Effect::Deny,
                        _ => return err("Invalid effect: must be Allow or Deny"),
                    })
                }
                "Principal" => principal = Some(principals(v)?),
                "Action" => actions = Some(strings(v, "Action")?),
                "Resource" => resources = Some(strings(v, "Resource")?),
                "Condition" => return err("Conditions are not supported by this server"),
                other => return err(format!("Unsupported policy element {other}")),
            }
        }
        let effect = effect.ok_or_else(|| PolicyError("Missing required field Effect".into()))?;
        let principals =
            principal.ok_or_else(|| PolicyError("Missing required field Principal".into()))?;
        let actions: Vec<String> = actions
            .ok_or_else(|| PolicyError("Missing required field Action".into()))?
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        for a in &actions {
            if !ACTIONS
                .iter()
                .any(|known| wildcard_match(a, &known.to_ascii_lowercase()))
            {
                return err(format!("Policy has invalid action: {a}"));
            }
        }
        let resources =
            resources.ok_or_else(|| PolicyError("Missing required field Resource".into()))?;
        for r in &resources {
            let Some(rest) = r.strip_prefix("arn:aws:s3:::") else {
                return err("Policy has invalid resource");
            };
            let bucket_part = rest.split('/').next().unwrap_or(rest);
            if !wildcard_match(bucket_part, bucket) {
                return err("Policy has invalid resource");
            }
        }
        Ok(Self {
            effect,
            principals,
            actions,
            resources,
        })
    }

    fn applies(&self, requester: Option<Requester<'_>>, actions: &[&str], resource: &str) -> bool {
        let who = match (&self.principals, requester) {
            (Principals::Anyone, _) => true,
            (Principals::Ids(_), None) => false,
            (Principals::Ids(ids), Some(r)) => ids.iter().any(|id| {
                id == r.access_key
                    || id == r.user_id
                    || id
                        .strip_prefix("arn:aws:iam::")
                        .and_then(|rest| rest.strip_suffix(":root"))
                        .is_some_and(|acct| acct == r.user_id)
            }),
        };
        who && actions.iter().any(|action| {
            let action = action.to_ascii_lowercase();
            self.actions.iter().any(|p| wildcard_match(p, &action))
        }) && self.resources.iter().any(|p| wildcard_match(p, resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Requester<'static> = Requester {
        access_key: "AKALICE",
        user_id: "aaaa",
    };

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y"));
        assert!(!wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx"));
        assert!(!wildcard_match("*a*b", "xxaxxbxx"));
    }

    #[test]
    fn public_read_policy() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"p","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            "b",
        )
        .unwrap();
        assert_eq!(
            p.evaluate(None, &["s3:GetObject"], "arn:aws:s3:::b/k"),
            Some(Effect::Allow)
        );
        assert_eq!(p.evaluate(None, &["s3:ListBucket"], "arn:aws:s3:::b"), None);
        assert_eq!(
            p.evaluate(Some(ALICE), &["s3:PutObject"], "arn:aws:s3:::b/k"),
            None
        );
    }

    #[test]
    fn deny_wins_and_principals_match_ids() {
        let p = Policy::parse(
            r#"{"Statement":[
                {"Effect":"Allow","Principal":{"AWS":"*"},"Action":["s3:*"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]},
                {"Effect":"Deny","Principal":{"AWS":["arn:aws:iam::aaaa:root"]},"Action":"s3:Get*","Resource":"arn:aws:s3:::b/secret/*"}]}"#,
            "b",
        )
        .unwrap();
        assert_eq!(
            p.evaluate(Some(ALICE), &["s3:GetObject"], "arn:aws:s3:::b/secret/x"),
            Some(Effect::Deny)
        );
        assert_eq!(
            p.evaluate(None, &["s3:GetObject"], "arn:aws:s3:::b/secret/x"),
            Some(Effect::Allow)
        );
        assert_eq!(
            p.evaluate(Some(ALICE), &["s3:ListBucket"], "arn:aws:s3:::b"),
            Some(Effect::Allow)
        );
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let base = |stmt: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{stmt}]}}"#);
        for bad in [
            base(
                r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"1.2.3.4/32"}}}"#,
            ),
            base(
                r#"{"Effect":"Allow","Principal":"*","Action":"s3:Frobnicate","Resource":"arn:aws:s3:::b/*"}"#,
            ),
            base(
                r#"{"Effect":"Allow","Principal":"*","NotAction":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#,
            ),
            base(
                r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}"#,
            ),
            base(
                r#"{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#,
            ),
            base(r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#),
            r#"{"Version":"2012-10-17","Statement":[]}"#.to_owned(),
            "not json".to_owned(),
            r#"{"Version":"1999-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#.to_owned(),
        ] {
            assert!(Policy::parse(&bad, "b").is_err(), "accepted {bad}");
        }
    }
}
