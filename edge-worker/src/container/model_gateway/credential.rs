//! The credential a task's agent calls the model gateway with, in place of the real model key
//! (which stays a Worker secret and never enters the container). One is minted per task by the
//! user's object; it names that object, so the Worker knows whose object to ask, and carries a
//! random secret that object keeps only a hash of. Knowing the shape grants nothing: an object
//! honours only a credential it minted, for a task it has not seen end.
//!
//! Shape: `apmc_<object id, 64 hex>_<secret, 64 hex>`.

use crate::front::credentials::{bearer, format_secret, secret_hash};

const PREFIX: &str = "apmc_";
const OBJECT_ID_LEN: usize = 64;
const SECRET_LEN: usize = 64;

/// A credential, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCredential {
    /// The hex id of the Durable Object that minted it.
    pub object_id: String,
    /// The whole credential's hash, as the object stores it.
    pub hash: String,
}

/// A new credential for the object `object_id` from 32 random bytes.
pub fn mint(object_id: &str, random: &[u8]) -> String {
    format_secret(&format!("{PREFIX}{object_id}_"), random)
}

/// The credential's hash (what the object keeps; the credential itself is only ever in the
/// task's agent's environment).
pub fn hash(credential: &str) -> String {
    secret_hash(credential)
}

/// [`read`] from a request's headers.
///
/// # Errors
/// As [`read`]; the outer error only if the headers cannot be read.
pub fn from_headers(headers: &worker::Headers) -> worker::Result<Result<ModelCredential, &'static str>> {
    Ok(read(headers.get("x-api-key")?.as_deref(), headers.get("authorization")?.as_deref()))
}

/// Reads the credential a model call presents: `x-api-key` (what the CLI sends), or
/// `Authorization: Bearer`.
///
/// # Errors
/// Why it is refused (no credential, or not one of this gateway's), as the 401's message.
pub fn read(x_api_key: Option<&str>, authorization: Option<&str>) -> Result<ModelCredential, &'static str> {
    let presented = x_api_key
        .or_else(|| bearer(authorization))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or("the model gateway needs the task's credential in x-api-key")?;
    let not_ours = "this is not a task credential of this model gateway";
    let rest = presented.strip_prefix(PREFIX).ok_or(not_ours)?;
    let (object_id, secret) = rest.split_once('_').ok_or(not_ours)?;
    let is_hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(object_id, OBJECT_ID_LEN) || !is_hex(secret, SECRET_LEN) {
        return Err(not_ours);
    }
    Ok(ModelCredential { object_id: object_id.to_ascii_lowercase(), hash: hash(presented) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_credential_reads_back_to_its_object_and_hash() {
        let credential = mint(OBJECT, &[7u8; 32]);
        let read = read(Some(&credential), None).unwrap();
        assert_eq!(read.object_id, OBJECT);
        assert_eq!(read.hash, hash(&credential));
        assert_eq!(super::read(None, Some(&format!("Bearer {credential}"))).unwrap(), read);
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        assert!(read(None, None).unwrap_err().contains("x-api-key"));
        assert!(read(Some(" "), None).unwrap_err().contains("x-api-key"));
        let other_object = mint(&OBJECT[..62], &[7u8; 32]);
        for presented in ["sk-ant-real-key", "apmc_", &other_object, &format!("apmc_{OBJECT}_zz")] {
            assert_eq!(read(Some(presented), None).unwrap_err(), "this is not a task credential of this model gateway");
        }
    }

    #[test]
    fn credentials_of_different_secrets_hash_apart() {
        assert_ne!(hash(&mint(OBJECT, &[1u8; 32])), hash(&mint(OBJECT, &[2u8; 32])));
    }
}
