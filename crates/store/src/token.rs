//! API tokens: bearer secrets with a role, stored only as a hash.
//!
//! A secret is `bo_` followed by 64 hex digits (32 bytes from the operating
//! system's random source). It is shown once, when created; the store keeps
//! its SHA-256 only. Because the secret has 256 bits of entropy, a plain
//! SHA-256 is enough (a slow password hash protects guessable secrets, and
//! these are not), and it lets `verify` find the token by its hash with an
//! index. The final comparison is in constant time anyway.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::StoreError;

/// What a token may do.
///
/// The roles of people and tools are ordered, viewer < operator < admin:
/// each can do everything the ones below it can. `proxy` stands apart: it is
/// the role of a data-plane proxy following the control plane, which may
/// subscribe to snapshots and report back, and nothing else, not even read
/// status. An admin may do everything, a proxy's part included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads status, history and events.
    Viewer,
    /// Also approves, pauses, resumes, aborts, rolls back and releases.
    Operator,
    /// Also manages tokens and break-glass operations.
    Admin,
    /// A proxy: subscribes to snapshots and reports; outside the order above.
    Proxy,
}

impl Role {
    /// Every role: the ordered ones weakest first, then `proxy`.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Proxy];

    /// The lowercase name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Proxy => "proxy",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (Role::Proxy, needed) => needed == Role::Proxy,
            (_, Role::Proxy) => false,
            (Role::Operator, needed) => needed != Role::Admin,
            (Role::Viewer, needed) => needed == Role::Viewer,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A role name that is not `viewer`, `operator`, `admin` or `proxy`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; use viewer, operator, admin or proxy")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.to_owned()))
    }
}

/// What the store knows about a token (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// The token table.
pub trait Tokens: Send + Sync {
    /// Creates a token and returns its secret: the only time it is ever
    /// visible. Names are unique ([`StoreError::TokenExists`]).
    fn create_token(&self, name: &str, role: Role, at_ms: i64) -> Result<String, StoreError>;

    /// The token this secret belongs to, or `None` for an unknown, revoked
    /// or malformed secret.
    fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError>;

    /// Every token, by name.
    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;

    /// Revokes the token with this name; `false` when there was none.
    ///
    /// The last admin token is never revoked ([`StoreError::LastAdmin`]):
    /// without one nobody could manage tokens any more. The check runs in
    /// the same transaction as the delete, so two admins revoking each
    /// other at once cannot both succeed.
    fn revoke_token(&self, name: &str) -> Result<bool, StoreError>;
}

/// Prefix of every secret: makes tokens recognisable to secret scanners
/// and in a misplaced paste.
pub const SECRET_PREFIX: &str = "bo_";

/// Length of a secret: the prefix and 64 hex digits.
const SECRET_LEN: usize = SECRET_PREFIX.len() + 64;

/// SHA-256 of a secret, as stored.
pub(crate) type SecretHash = [u8; 32];

/// A fresh secret and its hash.
pub(crate) fn new_secret() -> Result<(String, SecretHash), StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random {
        detail: e.to_string(),
    })?;
    let mut secret = String::with_capacity(SECRET_LEN);
    secret.push_str(SECRET_PREFIX);
    for b in bytes {
        secret.push(hex_digit(b >> 4));
        secret.push(hex_digit(b & 0xf));
    }
    let hash = hash_secret(&secret);
    Ok((secret, hash))
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0xf)])
}

/// The hash of a presented secret, or `None` when it cannot be a secret
/// this store made (so no lookup is needed). The shape of a secret is
/// public, so rejecting early reveals nothing.
pub(crate) fn presented_hash(secret: &str) -> Option<SecretHash> {
    let digits = secret.strip_prefix(SECRET_PREFIX)?;
    if secret.len() != SECRET_LEN || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(hash_secret(secret))
}

fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares a stored hash with a presented one in constant time.
pub(crate) fn hashes_match(stored: &[u8], presented: &SecretHash) -> bool {
    stored.ct_eq(presented.as_slice()).into()
}

/// Token names appear in audit records (`actor`) and on command lines, so
/// they are short and plain.
pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidTokenName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 64 {
        return invalid("it is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
    {
        return invalid("use letters, digits and - _ . : @ only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(name: &str, expected: &str) {
        let got = match validate_name(name) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "name {name:?}");
    }

    #[test]
    fn names() {
        check_name("ci", "ok");
        check_name("cli:alice@example.com", "ok");
        check_name("deploy-bot_2.prod", "ok");
        check_name("", "invalid token name \"\": it is empty");
        check_name(
            "a b",
            "invalid token name \"a b\": use letters, digits and - _ . : @ only",
        );
        check_name(
            "é",
            "invalid token name \"é\": use letters, digits and - _ . : @ only",
        );
        check_name(
            &"x".repeat(65),
            &format!(
                "invalid token name {:?}: it is longer than 64 characters",
                "x".repeat(65)
            ),
        );
    }

    fn check_presented(secret: &str, accepted: bool) {
        assert_eq!(presented_hash(secret).is_some(), accepted, "{secret:?}");
    }

    #[test]
    fn presented_secrets() {
        let (fresh, hash) = new_secret().unwrap();
        assert_eq!(presented_hash(&fresh), Some(hash));
        check_presented(&fresh, true);
        check_presented(&format!("bo_{}", "0".repeat(64)), true);
        check_presented(&format!("bo_{}", "A".repeat(64)), true);
        check_presented("", false);
        check_presented("bo_", false);
        check_presented(&format!("bo_{}", "0".repeat(63)), false);
        check_presented(&format!("bo_{}", "0".repeat(65)), false);
        check_presented(&format!("xx_{}", "0".repeat(64)), false);
        check_presented(&format!("bo_{}g", "0".repeat(63)), false);
        check_presented(&format!("bo_{}é", "0".repeat(62)), false);
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, ha) = new_secret().unwrap();
        let (b, hb) = new_secret().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(a.len(), SECRET_LEN);
        assert!(a.starts_with("bo_"));
        assert!(
            a[3..]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert!(hashes_match(&ha, &ha));
        assert!(!hashes_match(&ha, &hb));
        assert!(!hashes_match(&ha[..31], &ha));
    }

    fn check_role(s: &str, expected: Result<Role, ()>) {
        assert_eq!(s.parse::<Role>().map_err(|_| ()), expected, "{s:?}");
    }

    #[test]
    fn roles() {
        check_role("viewer", Ok(Role::Viewer));
        check_role("operator", Ok(Role::Operator));
        check_role("admin", Ok(Role::Admin));
        check_role("proxy", Ok(Role::Proxy));
        check_role("Admin", Err(()));
        check_role("root", Err(()));
        check_role("", Err(()));
        for r in Role::ALL {
            assert_eq!(r.to_string().parse::<Role>(), Ok(r));
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "unknown role \"root\"; use viewer, operator, admin or proxy"
        );
    }

    /// Who may do what: the table of every role (rows) against every role
    /// an endpoint needs (columns: viewer, operator, admin, proxy).
    #[test]
    fn what_each_role_allows() {
        let table: Vec<String> = Role::ALL
            .into_iter()
            .map(|r| {
                let cells: String = Role::ALL
                    .into_iter()
                    .map(|needed| if r.allows(needed) { 'x' } else { '.' })
                    .collect();
                format!("{r:<8} {cells}")
            })
            .collect();
        assert_eq!(
            table,
            [
                "viewer   x...",
                "operator xx..",
                "admin    xxxx",
                "proxy    ...x",
            ]
        );
    }
}
