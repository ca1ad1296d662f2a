//! Request bodies read up to a limit, as a stream. `Request::bytes` buffers a whole body before
//! anything can look at its size: a chunked body declares none, a declared length can lie, and a
//! body of a few GiB made the Worker buffer all of it (and, past wasm's memory, panic the isolate
//! every object of it shares). Here reading stops at the first chunk past the limit.

use futures::StreamExt;
use worker::{ByteStream, Request};

/// Chunks gathered while they stay within a limit. Pure, so the rule is tested on the host.
#[derive(Debug)]
pub struct Gathered {
    limit: usize,
    bytes: Vec<u8>,
}

/// The body is larger than the limit: its declared length, when it declared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub declared: Option<usize>,
}

impl TooLarge {
    /// What the refusal says, e.g. "the request body (5000000 bytes) is larger than the limit of
    /// 1048576 bytes".
    pub fn message(&self, what: &str, limit: usize) -> String {
        match self.declared {
            Some(len) => format!("{what} ({len} bytes) is larger than the limit of {limit} bytes"),
            None => format!("{what} is larger than the limit of {limit} bytes"),
        }
    }
}

impl Gathered {
    pub fn new(limit: usize) -> Gathered {
        Gathered { limit, bytes: Vec::new() }
    }

    /// Adds `chunk`, or says the body is now over the limit (nothing more is kept).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.bytes.len() + chunk.len() > self.limit {
            return Err(TooLarge { declared: None });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Whether a declared `Content-Length` is already over `limit` (then nothing need be read).
pub fn declared_over(content_length: Option<&str>, limit: usize) -> Option<usize> {
    content_length.and_then(|len| len.trim().parse::<usize>().ok()).filter(|len| *len > limit)
}

/// Most of a refused body read (and dropped) before the refusal is sent: the runtime cannot reuse
/// a connection whose request body was left unread (the caller's next request on it fails), and
/// past this much the caller is flooding, not calling: its connection may break.
pub const DISCARDED_AT_MOST: usize = 64 << 20;

/// The whole body of `req` if it is at most `limit` bytes; `Err` as soon as it is known to be
/// larger (by its Content-Length, or by the bytes read so far), once what is left of it has been
/// dropped ([`discard`]). A request without a body reads as empty.
pub async fn read_within(req: &mut Request, limit: usize) -> worker::Result<Result<Vec<u8>, TooLarge>> {
    if let Some(len) = declared_over(req.headers().get("content-length")?.as_deref(), limit) {
        discard(req).await?;
        return Ok(Err(TooLarge { declared: Some(len) }));
    }
    let Some(mut stream) = body_stream(req)? else { return Ok(Ok(Vec::new())) };
    let mut gathered = Gathered::new(limit);
    while let Some(chunk) = stream.next().await {
        if let Err(too_large) = gathered.push(&chunk?) {
            drop_rest(&mut stream).await;
            return Ok(Err(too_large));
        }
    }
    Ok(Ok(gathered.into_bytes()))
}

/// Reads what is left of `req`'s body and drops it, up to [`DISCARDED_AT_MOST`]: what a refusal
/// does with a body it will not use. Nothing is kept, so memory stays flat however large it is.
pub async fn discard(req: &mut Request) -> worker::Result<()> {
    if let Some(mut stream) = body_stream(req)? {
        drop_rest(&mut stream).await;
    }
    Ok(())
}

fn body_stream(req: &mut Request) -> worker::Result<Option<ByteStream>> {
    if req.inner().body().is_none() || req.inner().body_used() {
        return Ok(None);
    }
    req.stream().map(Some)
}

async fn drop_rest(stream: &mut ByteStream) {
    let mut dropped = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        dropped += chunk.len();
        if dropped >= DISCARDED_AT_MOST {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_kept_up_to_the_limit_and_refused_past_it() {
        let mut gathered = Gathered::new(10);
        gathered.push(b"hello").unwrap();
        gathered.push(b"world").unwrap();
        assert_eq!(gathered.push(b"!"), Err(TooLarge { declared: None }), "one byte over is over");
        assert_eq!(gathered.into_bytes(), b"helloworld", "what went over is not kept");
    }

    #[test]
    fn the_refusal_names_the_declared_length_when_there_was_one() {
        let declared = TooLarge { declared: Some(11) };
        assert_eq!(declared.message("the body", 10), "the body (11 bytes) is larger than the limit of 10 bytes");
        assert_eq!(
            TooLarge { declared: None }.message("the body", 10),
            "the body is larger than the limit of 10 bytes"
        );
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        assert_eq!(declared_over(Some("11"), 10), Some(11));
        assert_eq!(declared_over(Some("10"), 10), None);
        assert_eq!(declared_over(None, 10), None, "chunked: read and counted");
        assert_eq!(declared_over(Some("lots"), 10), None, "unreadable: read and counted");
    }
}
