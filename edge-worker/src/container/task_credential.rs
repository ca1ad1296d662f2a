//! The credentials a task's agent and git use at the edge's gateways in place of the real
//! secrets (the model key, the user's GitHub token), which never enter the container. One of
//! each is minted per task by the user's object; it names that object, so the Worker knows whose
//! object to ask, and carries a random secret that object keeps only a hash of. Knowing the shape
//! grants nothing: an object honours only a credential it minted, for a task it has not seen end.
//!
//! Shape: `apmc_<object id, 64 hex>_<secret, 64 hex>` for the model gateway, `apgc_...` for the
//! git gateway, `apcc_...` for the prepared store.

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::front::credentials::{bearer, format_secret, secret_hash};

const OBJECT_ID_LEN: usize = 64;
const SECRET_LEN: usize = 64;

/// Which gateway a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Model,
    Git,
    /// The prepared store ([`crate::container::environments`]).
    Store,
}

impl Gateway {
    fn prefix(self) -> &'static str {
        match self {
            Gateway::Model => "apmc_",
            Gateway::Git => "apgc_",
            Gateway::Store => "apcc_",
        }
    }
}

/// A credential, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCredential {
    /// The hex id of the Durable Object that minted it.
    pub object_id: String,
    /// The whole credential's hash, as the object stores it.
    pub hash: String,
}

/// A new credential of `gateway` for the object `object_id` from 32 random bytes.
pub fn mint(gateway: Gateway, object_id: &str, random: &[u8]) -> String {
    format_secret(&format!("{}{object_id}_", gateway.prefix()), random)
}

/// The credential's hash (what the object keeps; the credential itself is only ever in the
/// task's agent's environment).
pub fn hash(credential: &str) -> String {
    secret_hash(credential)
}

/// [`read`] from a model call's headers.
///
/// # Errors
/// As [`read`]; the outer error only if the headers cannot be read.
pub fn from_headers(headers: &worker::Headers) -> worker::Result<Result<TaskCredential, &'static str>> {
    Ok(read(headers.get("x-api-key")?.as_deref(), headers.get("authorization")?.as_deref()))
}

/// Reads the credential a model call presents: `x-api-key` (what the CLI sends), or
/// `Authorization: Bearer`.
///
/// # Errors
/// Why it is refused (no credential, or not one of this gateway's), as the 401's message.
pub fn read(x_api_key: Option<&str>, authorization: Option<&str>) -> Result<TaskCredential, &'static str> {
    let presented = x_api_key
        .or_else(|| bearer(authorization))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or("the model gateway needs the task's credential in x-api-key")?;
    read_as(Gateway::Model, presented).ok_or("this is not a task credential of this model gateway")
}

/// Reads the credential git presents as the password of HTTP Basic auth (the user name is
/// ignored, as GitHub's `x-access-token` convention has it).
///
/// # Errors
/// Why it is refused, as the 401's message.
pub fn read_git(authorization: Option<&str>) -> Result<TaskCredential, &'static str> {
    let basic = authorization
        .and_then(|value| value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")))
        .ok_or("the git gateway needs the task's credential (HTTP Basic auth)")?;
    let decoded = STANDARD.decode(basic.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    let password = decoded.as_deref().and_then(|pair| pair.split_once(':')).map(|(_, password)| password.to_string());
    password.and_then(|p| read_as(Gateway::Git, &p)).ok_or("this is not a task credential of this git gateway")
}

/// Reads the credential a prepared store call presents (`Authorization: Bearer`).
///
/// # Errors
/// Why it is refused, as the 401's message.
pub fn read_store(authorization: Option<&str>) -> Result<TaskCredential, &'static str> {
    let presented = bearer(authorization)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or("the prepared store needs the task's credential (Authorization: Bearer)")?;
    read_as(Gateway::Store, presented).ok_or("this is not a task credential of this prepared store")
}

/// `presented` read as a credential of `gateway`.
fn read_as(gateway: Gateway, presented: &str) -> Option<TaskCredential> {
    let rest = presented.strip_prefix(gateway.prefix())?;
    let (object_id, secret) = rest.split_once('_')?;
    let is_hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(object_id, OBJECT_ID_LEN) || !is_hex(secret, SECRET_LEN) {
        return None;
    }
    Some(TaskCredential { object_id: object_id.to_ascii_lowercase(), hash: hash(presented) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_credential_reads_back_to_its_object_and_hash() {
        let credential = mint(Gateway::Model, OBJECT, &[7u8; 32]);
        let read = read(Some(&credential), None).unwrap();
        assert_eq!(read.object_id, OBJECT);
        assert_eq!(read.hash, hash(&credential));
        assert_eq!(super::read(None, Some(&format!("Bearer {credential}"))).unwrap(), read);
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        assert!(read(None, None).unwrap_err().contains("x-api-key"));
        assert!(read(Some(" "), None).unwrap_err().contains("x-api-key"));
        let other_object = mint(Gateway::Model, &OBJECT[..62], &[7u8; 32]);
        for presented in ["sk-ant-real-key", "apmc_", &other_object, &format!("apmc_{OBJECT}_zz")] {
            assert_eq!(read(Some(presented), None).unwrap_err(), "this is not a task credential of this model gateway");
        }
    }

    #[test]
    fn git_presents_its_credential_as_the_basic_password_and_only_a_git_one_is_taken() {
        let credential = mint(Gateway::Git, OBJECT, &[9u8; 32]);
        let basic = |pair: &str| format!("Basic {}", STANDARD.encode(pair));
        let read = read_git(Some(&basic(&format!("x-access-token:{credential}")))).unwrap();
        assert_eq!((read.object_id.as_str(), read.hash), (OBJECT, hash(&credential)));
        let model = mint(Gateway::Model, OBJECT, &[9u8; 32]);
        assert!(read_git(Some(&basic(&format!("x:{model}")))).is_err(), "a model credential opens no repository");
        assert!(super::read(Some(&credential), None).is_err(), "nor a git one the model");
        assert!(read_git(None).unwrap_err().contains("Basic"));
        assert!(read_git(Some("Basic !!!")).is_err());
        assert!(read_git(Some(&basic("no-colon"))).is_err());
    }

    #[test]
    fn the_store_takes_its_own_credential_as_a_bearer_and_no_other() {
        let credential = mint(Gateway::Store, OBJECT, &[5u8; 32]);
        assert!(credential.starts_with("apcc_"));
        let read = read_store(Some(&format!("Bearer {credential}"))).unwrap();
        assert_eq!((read.object_id.as_str(), read.hash), (OBJECT, hash(&credential)));
        let model = mint(Gateway::Model, OBJECT, &[5u8; 32]);
        assert!(read_store(Some(&format!("Bearer {model}"))).is_err(), "a model credential reaches no store");
        assert!(super::read(Some(&credential), None).is_err(), "nor a store one the model");
        assert!(read_store(None).unwrap_err().contains("Bearer"));
    }

    #[test]
    fn credentials_of_different_secrets_hash_apart() {
        assert_ne!(hash(&mint(Gateway::Model, OBJECT, &[1u8; 32])), hash(&mint(Gateway::Model, OBJECT, &[2u8; 32])));
    }
}
