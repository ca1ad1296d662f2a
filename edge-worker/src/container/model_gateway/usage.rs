//! Counting a task's model tokens from the Messages API responses the gateway relays, as they
//! pass: a streamed reply's `message_start` (input, cache and first output tokens) and
//! `message_delta` (output tokens so far) events, or a whole reply's `usage`. Plain Rust over
//! bytes, fed chunk by chunk (an event may straddle chunks), so it is tested on the host.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole (non-streamed) reply larger than this is not parsed for its usage.
const MAX_WHOLE_REPLY: usize = 4 << 20;

/// Tokens of one call, or of a task's calls added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(rename = "inputTokens")]
    pub input: u64,
    #[serde(rename = "outputTokens")]
    pub output: u64,
    #[serde(rename = "cacheReadTokens")]
    pub cache_read: u64,
    #[serde(rename = "cacheCreationTokens")]
    pub cache_creation: u64,
}

impl Tokens {
    pub fn add(&mut self, other: Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_creation += other.cache_creation;
    }

    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_creation
    }

    /// Takes what a `usage` object says (fields absent from it are kept).
    fn take(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        self.input = field("input_tokens").unwrap_or(self.input);
        self.output = field("output_tokens").unwrap_or(self.output);
        self.cache_read = field("cache_read_input_tokens").unwrap_or(self.cache_read);
        self.cache_creation = field("cache_creation_input_tokens").unwrap_or(self.cache_creation);
    }
}

/// Reads one reply's usage as its bytes pass.
#[derive(Debug, Default)]
pub struct UsageMeter {
    streamed: bool,
    /// Streamed: the bytes of the line not yet complete. Whole: the reply so far.
    pending: Vec<u8>,
    tokens: Tokens,
}

impl UsageMeter {
    /// A meter for a reply of `content_type` (`text/event-stream` is a streamed reply).
    pub fn new(content_type: &str) -> UsageMeter {
        UsageMeter { streamed: content_type.starts_with("text/event-stream"), ..UsageMeter::default() }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.streamed {
            if self.pending.len() + chunk.len() <= MAX_WHOLE_REPLY {
                self.pending.extend_from_slice(chunk);
            }
            return;
        }
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let Ok(event) = serde_json::from_slice::<Value>(data.trim_ascii()) else { return };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = event.pointer("/message/usage") {
                    self.tokens.take(usage);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = event.get("usage") {
                    self.tokens.take(usage);
                }
            }
            _ => {}
        }
    }

    /// The reply's tokens, once it has passed whole (or as far as it went).
    pub fn finish(mut self) -> Tokens {
        if self.streamed {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest);
        } else if let Ok(reply) = serde_json::from_slice::<Value>(&self.pending) {
            if let Some(usage) = reply.get("usage") {
                self.tokens.take(usage);
            }
        }
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\n\
        data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n\
        event: content_block_delta\n\
        data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n\
        event: message_delta\n\
        data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
        event: message_stop\n\
        data: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn a_streamed_reply_counts_its_start_and_final_delta_however_it_is_cut() {
        let want = Tokens { input: 25, output: 15, cache_read: 3, cache_creation: 0 };
        for cut in [1, 7, 64, STREAM.len()] {
            let mut meter = UsageMeter::new("text/event-stream; charset=utf-8");
            STREAM.as_bytes().chunks(cut).for_each(|chunk| meter.feed(chunk));
            assert_eq!(meter.finish(), want, "chunks of {cut}");
        }
    }

    #[test]
    fn a_whole_reply_counts_its_usage() {
        let mut meter = UsageMeter::new("application/json");
        let reply =
            br#"{"type":"message","usage":{"input_tokens":12,"output_tokens":34,"cache_creation_input_tokens":5}}"#;
        reply.chunks(10).for_each(|chunk| meter.feed(chunk));
        assert_eq!(meter.finish(), Tokens { input: 12, output: 34, cache_read: 0, cache_creation: 5 });
    }

    #[test]
    fn errors_and_garbage_count_nothing() {
        let mut meter = UsageMeter::new("application/json");
        meter.feed(br#"{"type":"error","error":{"type":"overloaded_error"}}"#);
        assert_eq!(meter.finish(), Tokens::default());
        let mut meter = UsageMeter::new("text/event-stream");
        meter.feed(b"data: {not json\n\ndata: [DONE]\n");
        assert_eq!(meter.finish().total(), 0);
    }
}
