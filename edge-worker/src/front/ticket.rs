//! Single-use WebSocket tickets. Browsers cannot set headers on a WebSocket, so an authenticated
//! request first gets a short-lived ticket bound to the user and the session, and the WebSocket
//! URL carries it. The ticket is signed (HMAC-SHA256) so the Worker can route it to its user's
//! Durable Object without trusting it; the object burns its nonce on first use, which makes it
//! single-use (the object's storage is strongly consistent).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a ticket is valid after it is issued.
pub const TICKET_TTL_MS: u64 = 60_000;

/// What a ticket grants: one WebSocket to `session_id` of `user_id`, until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "s")]
    pub session_id: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "e")]
    pub expires_at_ms: u64,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    Malformed,
    Forged,
    Expired,
}

impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TicketError::Malformed => "the ticket is malformed",
            TicketError::Forged => "the ticket's signature is wrong",
            TicketError::Expired => "the ticket has expired",
        })
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The ticket's text: `base64url(json).base64url(hmac)`.
pub fn issue(secret: &[u8], ticket: &Ticket) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(ticket).expect("a ticket serializes"));
    let mut signature = mac(secret);
    signature.update(payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.finalize().into_bytes()))
}

/// Checks a ticket's signature (in constant time) and expiry.
///
/// # Errors
/// [`TicketError`]: malformed, forged or expired.
pub fn verify(secret: &[u8], text: &str, now_ms: u64) -> Result<Ticket, TicketError> {
    let (payload, signature) = text.split_once('.').ok_or(TicketError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TicketError::Malformed)?;
    let mut expected = mac(secret);
    expected.update(payload.as_bytes());
    expected.verify_slice(&signature).map_err(|_| TicketError::Forged)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TicketError::Malformed)?;
    let ticket: Ticket = serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)?;
    if now_ms >= ticket.expires_at_ms {
        return Err(TicketError::Expired);
    }
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket { user_id: "alice".into(), session_id: "s1".into(), nonce: "n1".into(), expires_at_ms: 60_000 }
    }

    #[test]
    fn an_issued_ticket_verifies_until_it_expires() {
        let text = issue(b"secret", &ticket());
        assert_eq!(verify(b"secret", &text, 59_999), Ok(ticket()));
        assert_eq!(verify(b"secret", &text, 60_000), Err(TicketError::Expired));
    }

    #[test]
    fn forged_and_tampered_tickets_are_refused() {
        let text = issue(b"secret", &ticket());
        assert_eq!(verify(b"other secret", &text, 0), Err(TicketError::Forged));
        let (_, signature) = text.split_once('.').unwrap();
        let bob = Ticket { user_id: "bob".into(), ..ticket() };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&bob).unwrap());
        assert_eq!(
            verify(b"secret", &format!("{payload}.{signature}"), 0),
            Err(TicketError::Forged),
            "another user's name in a signed ticket"
        );
        assert_eq!(verify(b"secret", "garbage", 0), Err(TicketError::Malformed));
        assert_eq!(verify(b"secret", "a.!!!", 0), Err(TicketError::Malformed));
    }
}
