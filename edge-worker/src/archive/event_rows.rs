//! How the archive ([`crate::archive`]) stores a task's events: one row per run of them, its blob
//! the events' encodings length-delimited one after another (a row, or a bound value, per event
//! made the archive cost most of a stream's time). Each event is stored as it came, unless it is
//! too large for a row; a row holds at most [`CHUNK_BYTES`], since Durable Object SQLite refuses
//! a row over 2 MB. Pure.

use std::{borrow::Cow, ops::Range};

use autopilot_contract::v1::{event::Payload, Event};
use prost::Message;

use crate::bridge::SharedEvent;

/// One row: the seqs of its first and last events, and its blob.
pub struct Row {
    pub first_seq: u64,
    pub last_seq: u64,
    pub blob: Vec<u8>,
}

/// The rows `events` are stored in, in order, and whether one of the events had to be cut.
pub fn rows(events: &[&SharedEvent]) -> (Vec<Row>, bool) {
    let stored: Vec<Cow<[u8]>> = events.iter().map(|shared| archived_encoding(shared)).collect();
    let cut = stored.iter().any(|encoding| matches!(encoding, Cow::Owned(_)));
    let sizes: Vec<usize> = stored.iter().map(|encoding| encoding.len()).collect();
    let rows = chunks_of_bytes(&sizes, CHUNK_BYTES)
        .into_iter()
        .map(|chunk| {
            let (first_seq, last_seq) = (events[chunk.start].event.seq, events[chunk.end - 1].event.seq);
            let mut blob = Vec::with_capacity(sizes[chunk.clone()].iter().map(|size| size + 3).sum());
            for encoding in &stored[chunk] {
                prost::encoding::encode_varint(encoding.len() as u64, &mut blob);
                blob.extend_from_slice(encoding);
            }
            Row { first_seq, last_seq, blob }
        })
        .collect();
    (rows, cut)
}

/// The events a row's blob holds, in order (up to anything unreadable).
pub fn events(mut blob: &[u8]) -> impl Iterator<Item = Event> + '_ {
    std::iter::from_fn(move || if blob.is_empty() { None } else { Event::decode_length_delimited(&mut blob).ok() })
}

/// The most event bytes one archived row holds: Durable Object SQLite refuses a row over 2 MB.
const CHUNK_BYTES: usize = 1 << 20;
/// The most one archived event takes (see [`archived_encoding`]); so a row holds at most two.
const EVENT_MAX_BYTES: usize = 1 << 20;

/// Runs of consecutive items whose `sizes` add up to at most `max_bytes` each, in order (an item
/// bigger than that alone in its run).
fn chunks_of_bytes(sizes: &[usize], max_bytes: usize) -> Vec<Range<usize>> {
    let (mut chunks, mut start, mut bytes) = (Vec::new(), 0, 0);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && bytes + size > max_bytes {
            chunks.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

/// An event as the archive stores it: as it came, or, over [`EVENT_MAX_BYTES`] (a tool's large
/// input or output), with that text cut to fit and saying so; a tool's input stays a JSON
/// object. The live stream gave it whole; a replay from the archive gives this.
fn archived_encoding(shared: &SharedEvent) -> Cow<'_, [u8]> {
    let encoded = shared.encoded();
    if encoded.len() <= EVENT_MAX_BYTES {
        return Cow::Borrowed(encoded);
    }
    // What the other fields may take, at most.
    let keep = EVENT_MAX_BYTES - 4096;
    let note = |len: usize| format!("[cut by the edge's archive: {len} bytes, over its {EVENT_MAX_BYTES}-byte limit]");
    let cut = |text: &mut String| {
        let len = text.len();
        let end = (0..=keep.min(len)).rev().find(|&end| text.is_char_boundary(end)).unwrap_or(0);
        text.truncate(end);
        text.push_str(&note(len));
    };
    let mut event = shared.event.clone();
    match &mut event.payload {
        Some(Payload::AgentText(said)) => cut(&mut said.text),
        Some(Payload::ToolFinished(finished)) => cut(&mut finished.output),
        Some(Payload::ToolStarted(started)) => {
            started.input_json = serde_json::json!({ "archived": note(started.input_json.len()) }).to_string()
        }
        _ => {}
    }
    Cow::Owned(event.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{AgentText, ToolFinished, ToolStarted};

    #[test]
    fn rows_give_back_the_events_they_were_made_of() {
        let given: Vec<_> = (1..=3000)
            .map(|seq| {
                let text = "e".repeat(seq as usize % 1400);
                SharedEvent::new(Event {
                    seq,
                    payload: Some(Payload::AgentText(AgentText { text })),
                    ..Default::default()
                })
            })
            .collect();
        let shared: Vec<&SharedEvent> = given.iter().map(|event| event.as_ref()).collect();
        let (rows, cut) = rows(&shared);
        assert!(!cut && rows.len() > 1, "{} rows", rows.len());
        assert!(rows.iter().all(|row| row.blob.len() <= CHUNK_BYTES + 3 * 3000));
        let read: Vec<Event> = rows.iter().flat_map(|row| events(&row.blob)).collect();
        assert_eq!(read, given.iter().map(|shared| shared.event.clone()).collect::<Vec<_>>());
        for row in &rows {
            let seqs: Vec<u64> = events(&row.blob).map(|event| event.seq).collect();
            assert_eq!((seqs[0], seqs[seqs.len() - 1]), (row.first_seq, row.last_seq));
        }
    }

    #[test]
    fn a_batch_is_cut_into_rows_of_a_bounded_size_in_order() {
        assert_eq!(chunks_of_bytes(&[40, 40, 200, 10, 10], 100), [0..2, 2..3, 3..5], "one over the bound is alone");
        assert_eq!(chunks_of_bytes(&[40, 40, 200], usize::MAX), [0..3]);
        assert!(chunks_of_bytes(&[], 100).is_empty());
    }

    #[test]
    fn an_event_too_large_for_a_row_is_cut_to_fit_and_says_so() {
        let event = |payload| {
            SharedEvent::new(Event { task_id: "t".into(), seq: 4, payload: Some(payload), ..Default::default() })
        };
        let small = event(Payload::AgentText(AgentText { text: "hello".into() }));
        assert!(matches!(archived_encoding(&small), Cow::Borrowed(_)));

        let output = "ü".repeat(EVENT_MAX_BYTES);
        let big = event(Payload::ToolFinished(ToolFinished { tool_id: "x".into(), output, is_error: false }));
        let stored = Event::decode(&*archived_encoding(&big)).unwrap();
        assert!(stored.encoded_len() <= EVENT_MAX_BYTES);
        let Some(Payload::ToolFinished(finished)) = stored.payload else { panic!("{stored:?}") };
        assert!(
            finished.output.starts_with("üü") && finished.output.ends_with("byte limit]"),
            "{}",
            &finished.output[finished.output.len() - 80..]
        );
        assert_eq!((finished.tool_id.as_str(), stored.seq), ("x", 4));

        let input_json = format!(r#"{{"content":"{}"}}"#, "x".repeat(EVENT_MAX_BYTES));
        let big = event(Payload::ToolStarted(ToolStarted { tool_id: "y".into(), name: "Write".into(), input_json }));
        let Some(Payload::ToolStarted(started)) = Event::decode(&*archived_encoding(&big)).unwrap().payload else {
            panic!()
        };
        let input: serde_json::Value = serde_json::from_str(&started.input_json).expect("still a JSON object");
        assert!(input["archived"].as_str().unwrap().contains("cut by the edge's archive"));
    }
}
