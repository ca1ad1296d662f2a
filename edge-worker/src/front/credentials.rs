//! Credentials, as pure functions: API tokens (kept only as SHA-256 hashes), browser session
//! cookies, and the parsing of the headers that carry them. Secrets are compared in constant
//! time; nothing here logs or returns a secret it was given.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of API tokens, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "ap_";
/// Name of the browser session cookie.
pub const SESSION_COOKIE: &str = "autopilot_session";
/// Longest user id accepted.
pub const MAX_USER_ID_LEN: usize = 64;

/// A new API token or session value from 32 random bytes.
pub fn format_secret(prefix: &str, random: &[u8]) -> String {
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The hex SHA-256 of a secret: what storage keeps instead of the secret itself.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two secrets (or hashes) are equal, in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The `Set-Cookie` value of a session cookie living `max_age_seconds`.
pub fn session_set_cookie(value: &str, max_age_seconds: u64) -> String {
    format!("{SESSION_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age_seconds}")
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn session_clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0")
}

/// Whether `user_id` is a well-formed user id.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && user_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// What storage keeps for an API token (under the token's hash) or a browser session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    pub user_id: String,
    /// The token's label, e.g. "ci" (sessions: "browser session").
    pub label: String,
    /// The hash the record is stored under, compared again on use.
    pub hash: String,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl CredentialRecord {
    /// Whether the record proves `secret` at `now_ms`: the hash matches and it has not expired.
    pub fn accepts(&self, secret: &str, now_ms: u64) -> bool {
        let unexpired = self.expires_at_ms.is_none_or(|at| now_ms < at);
        constant_time_eq(&self.hash, &secret_hash(secret)) && unexpired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_hashes_and_checked_with_expiry() {
        let token = format_secret(TOKEN_PREFIX, &[0xab; 32]);
        assert!(token.starts_with("ap_abab") && token.len() == 3 + 64);
        let hash = secret_hash(&token);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, token);
        let record = CredentialRecord {
            user_id: "u".into(),
            label: "ci".into(),
            hash,
            created_at_ms: 0,
            expires_at_ms: Some(1_000),
        };
        assert!(record.accepts(&token, 999));
        assert!(!record.accepts(&token, 1_000), "expired");
        assert!(!record.accepts("ap_other", 10), "another token");
        let forever = CredentialRecord { expires_at_ms: None, ..record };
        assert!(forever.accepts(&token, u64::MAX));
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn headers_are_parsed_strictly() {
        assert_eq!(bearer(Some("Bearer ap_123")), Some("ap_123"));
        assert_eq!(bearer(Some("bearer  ap_123 ")), Some("ap_123"));
        assert_eq!(bearer(Some("Basic dXNlcg==")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert_eq!(cookie(Some("a=1; autopilot_session=xyz; b=2"), SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(Some("autopilot_session_other=1"), SESSION_COOKIE), None);
    }

    #[test]
    fn session_cookies_are_http_only_secure_and_lax() {
        let set = session_set_cookie("v", 3600);
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Max-Age=3600", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(session_clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn user_ids_are_plain() {
        assert!(valid_user_id("alice@example.com"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a/b"));
        assert!(!valid_user_id(&"x".repeat(65)));
        assert!(constant_time_eq("same", "same") && !constant_time_eq("same", "sane") && !constant_time_eq("a", "ab"));
    }
}
