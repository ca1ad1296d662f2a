//! GitHub tokens at rest: sealed with AES-256-GCM under a key derived from the
//! `GITHUB_TOKEN_KEY` secret, so the object's storage (and anything read out of it) holds no
//! usable token. A sealed token is base64 of its 12-byte nonce followed by the ciphertext; the
//! nonce is random for every seal ([`TokenKey::seal_fresh`] draws it from the runtime's CSPRNG).
//! Environments' secrets are sealed the same way, under a key from their own secret.

use aes_gcm::{aead::Aead, Aes256Gcm, Key, KeyInit, Nonce};
use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};

/// What the key is derived for (a key of another purpose never opens these).
const PURPOSE: &[u8] = b"autopilot: GitHub tokens at rest, v1\n";

/// The key tokens are sealed with.
pub struct TokenKey(Aes256Gcm);

/// A sealed token that does not open: another key sealed it, or it was altered.
#[derive(Debug, PartialEq, Eq)]
pub struct Unopenable;

impl TokenKey {
    /// The key derived from the secret; `None` for an empty secret.
    pub fn from_secret(secret: &str) -> Option<TokenKey> {
        if secret.trim().is_empty() {
            return None;
        }
        let derived = Sha256::new().chain_update(PURPOSE).chain_update(secret.trim().as_bytes()).finalize();
        Some(TokenKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&derived))))
    }

    /// `token` sealed with `nonce` (12 random bytes, never reused).
    pub fn seal(&self, token: &str, nonce: [u8; 12]) -> String {
        let sealed = self.0.encrypt(Nonce::from_slice(&nonce), token.as_bytes()).expect("AES-GCM seals any length");
        STANDARD.encode([nonce.as_slice(), sealed.as_slice()].concat())
    }

    /// `token` sealed with a fresh nonce from the runtime's CSPRNG.
    pub fn seal_fresh(&self, token: &str) -> worker::Result<String> {
        let nonce = crate::entropy::random_bytes(12)?;
        Ok(self.seal(token, nonce.try_into().expect("12 bytes")))
    }

    /// The token `sealed` holds.
    ///
    /// # Errors
    /// [`Unopenable`] when another key sealed it or it was altered.
    pub fn open(&self, sealed: &str) -> Result<String, Unopenable> {
        let bytes = STANDARD.decode(sealed).map_err(|_| Unopenable)?;
        if bytes.len() < 12 {
            return Err(Unopenable);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self.0.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| Unopenable)?;
        String::from_utf8(plain).map_err(|_| Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_with_its_key_only_and_shows_nothing_of_itself() {
        let key = TokenKey::from_secret("a secret of the deployment").unwrap();
        let sealed = key.seal("ghu_0123456789abcdef", [7; 12]);
        assert!(!sealed.contains("ghu_") && !sealed.contains("0123456789"), "{sealed}");
        assert_eq!(key.open(&sealed).unwrap(), "ghu_0123456789abcdef");
        assert_ne!(key.seal("ghu_0123456789abcdef", [8; 12]), sealed, "another nonce, another seal");
        let other = TokenKey::from_secret("another deployment's secret").unwrap();
        assert_eq!(other.open(&sealed), Err(Unopenable));
        let mut altered = STANDARD.decode(&sealed).unwrap();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&STANDARD.encode(altered)), Err(Unopenable));
        assert_eq!(key.open("not base64!"), Err(Unopenable));
        assert!(TokenKey::from_secret("  ").is_none());
    }
}
