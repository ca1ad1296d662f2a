//! What the container platform's errors mean for the Durable Object. Users of Cloudflare
//! Containers meet a few failures that pass by themselves: a start refused with "no container
//! instance can be provided" (capacity), and "not listening" while the service inside is still
//! starting or restarting. Those are retried; the rest are reported. The platform gives only
//! messages, so this reads messages; kept here, in one place, and tested.

/// What no retry of a start can change.
const PERMANENT_START_FAILURES: [&str; 3] = ["no such image", "must be configured", "invalid"];

/// Signs that nothing listened on the container's port.
const NOT_LISTENING: [&str; 5] = [
    "not listening",
    "connection refused",
    "container port not found",
    "through proxy-everything failed",
    "container is not running",
];

/// Whether a start that failed with `message` is worth trying again (with backoff, before a
/// deadline). Everything is, except what no retry can change.
pub fn start_is_transient(message: &str) -> bool {
    !mentions_any(message, &PERMANENT_START_FAILURES)
}

/// Whether a request failed because nothing listened on the container's port yet: the request
/// never reached the service, so sending it again is safe for idempotent calls.
pub fn is_not_listening(message: &str) -> bool {
    mentions_any(message, &NOT_LISTENING)
}

fn mentions_any(message: &str, phrases: &[&str]) -> bool {
    let message = message.to_ascii_lowercase();
    phrases.iter().any(|phrase| message.contains(phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_network_failures_are_retried() {
        assert!(start_is_transient("There is no Container instance available at this time"));
        assert!(start_is_transient("Error: no container instance can be provided"));
        assert!(start_is_transient("Network connection lost."));
        assert!(!start_is_transient("No such image available named cloudflare-dev/x:1"));
        assert!(!start_is_transient("containerEgressInterceptorImage must be configured for containers."));
    }

    #[test]
    fn recognises_a_port_nobody_listens_on() {
        assert!(is_not_listening(
            "could not reach the agent-service: Error: The container is not listening in the TCP address 10.0.0.1:8080"
        ));
        assert!(is_not_listening(
            "connect(): Connection refused: container port not found. Make sure you exposed the port"
        ));
        assert!(is_not_listening(
            "Error: Connecting to container port through proxy-everything failed: [400] Bad Request nothing listens"
        ));
        assert!(!is_not_listening("the agent-service answered HTTP 500 to Status"));
        assert!(!is_not_listening("no task with id 7"));
    }
}
