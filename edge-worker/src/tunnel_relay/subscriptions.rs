//! A browser socket's open `stream_events` subscriptions on the relay, as plain Rust. The list
//! rides in the socket's attachment (the relay hibernates between frames), so it is small and
//! bounded: a socket holds at most [`MAX_SUBSCRIPTIONS_PER_SOCKET`], as in container mode. Each
//! remembers the encoding it was opened in, which routes its frames (an unsubscribe may come in
//! another encoding than the subscription).

use serde::{Deserialize, Serialize};

use crate::{
    bridge::{too_many_subscriptions, Encoding, MAX_SUBSCRIPTIONS_PER_SOCKET},
    grpc_web::GrpcStatus,
};

/// One open subscription: the request id its browser chose, and its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub request_id: String,
    pub encoding: Encoding,
}

/// A socket's open subscriptions (stored as a plain list, as before this type existed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subscriptions(Vec<Subscription>);

impl Subscriptions {
    /// Opens `request_id` (again: a request id names one subscription).
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when the socket already holds the most it may.
    pub fn open(&mut self, request_id: &str, encoding: Encoding) -> Result<(), GrpcStatus> {
        self.0.retain(|s| s.request_id != request_id);
        if self.0.len() >= MAX_SUBSCRIPTIONS_PER_SOCKET {
            return Err(too_many_subscriptions());
        }
        self.0.push(Subscription { request_id: request_id.to_string(), encoding });
        Ok(())
    }

    /// Closes `request_id`; the encoding it was opened in, if it was open.
    pub fn close(&mut self, request_id: &str) -> Option<Encoding> {
        let index = self.0.iter().position(|s| s.request_id == request_id)?;
        Some(self.0.remove(index).encoding)
    }

    /// Closes them all; the ones that were open.
    pub fn take(&mut self) -> Vec<Subscription> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc_web::Code;

    #[test]
    fn a_socket_holds_a_bounded_number_and_a_request_id_names_one() {
        let mut open = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS_PER_SOCKET {
            open.open(&format!("s{i}"), Encoding::Binary).unwrap();
        }
        let refused = open.open("one-more", Encoding::Binary).unwrap_err();
        assert_eq!(refused.code, Code::ResourceExhausted as i32);
        open.open("s0", Encoding::Json).expect("the same id again replaces it, so it fits");
        let all = open.take();
        assert_eq!(all.len(), MAX_SUBSCRIPTIONS_PER_SOCKET);
        assert_eq!(all.iter().filter(|s| s.request_id == "s0").count(), 1);
    }

    #[test]
    fn closing_answers_the_encoding_it_was_opened_in() {
        let mut open = Subscriptions::default();
        open.open("a", Encoding::Json).unwrap();
        assert_eq!(open.close("a"), Some(Encoding::Json));
        assert_eq!(open.close("a"), None, "closed once");
        assert_eq!(open.close("never"), None);
    }

    #[test]
    fn taking_them_all_leaves_none() {
        let mut open = Subscriptions::default();
        open.open("a", Encoding::Binary).unwrap();
        open.open("b", Encoding::Json).unwrap();
        let taken: Vec<String> = open.take().into_iter().map(|s| s.request_id).collect();
        assert_eq!(taken, ["a", "b"]);
        assert!(open.take().is_empty());
    }

    #[test]
    fn an_attachment_stored_as_a_plain_list_still_reads() {
        let stored = r#"[{"request_id":"a","encoding":"Json"}]"#;
        let mut read: Subscriptions = serde_json::from_str(stored).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), stored, "and is stored the same way");
        assert_eq!(read.take()[0].request_id, "a");
    }
}
