//! The event log of one task: every event appended, as it happens, to a file in the task's
//! directory (length-delimited protobuf), so that any subscriber can replay from any seq without
//! the history being held in memory.
//!
//! One writer (the task) appends; any number of [`Subscription`]s read. The writer never waits
//! for a reader: it writes the event to the file, keeps a copy in a small in-memory window of
//! recent events, and publishes the new last seq on a `watch` channel. A subscriber that keeps up
//! is fed from the window; one that falls behind (or starts from an old seq) reads the file at its
//! own pace. Memory per task is bounded by the window and a sparse offset index (one `u64` per
//! [`INDEX_STRIDE`] events), whatever the number of events.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use autopilot_contract::v1::{event::Payload, Event};
use prost::Message;
use tokio::sync::watch;

/// One index entry per this many events: the file offset of seq `k * INDEX_STRIDE + 1`.
pub const INDEX_STRIDE: u64 = 1024;
/// Most events kept in memory for live subscribers.
const WINDOW_EVENTS: usize = 1024;
/// Most bytes (encoded) kept in memory for live subscribers.
const WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// Largest event accepted when reading a log back (guards against a corrupt length prefix).
const MAX_EVENT_BYTES: usize = 256 * 1024 * 1024;

/// What the writer has published: the last seq appended, and whether the log is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    pub last_seq: u64,
    pub closed: bool,
}

/// The log of one task.
pub struct EventLog {
    task_id: String,
    path: PathBuf,
    writer: Mutex<Writer>,
    published: watch::Sender<Published>,
}

struct Writer {
    file: File,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// Bytes in the file so far (the offset of the next event).
    offset: u64,
    last_seq: u64,
    closed: bool,
    /// `index[k]` is the offset of seq `k * INDEX_STRIDE + 1`.
    index: Vec<u64>,
    window: VecDeque<Event>,
    window_bytes: usize,
}

impl EventLog {
    /// Creates an empty log at `path` (which must not exist yet).
    ///
    /// # Errors
    /// The file could not be created.
    pub fn create(task_id: impl Into<String>, path: impl Into<PathBuf>) -> io::Result<Arc<EventLog>> {
        let path = path.into();
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        Ok(Self::with_writer(task_id.into(), path, file, 0, 0, Vec::new()))
    }

    /// Opens an existing log (after a restart), indexing it and returning its events' count.
    /// A torn last record (the service died mid-write) is cut off.
    ///
    /// # Errors
    /// The file could not be read or reopened.
    pub fn open(
        task_id: impl Into<String>,
        path: impl Into<PathBuf>,
        mut visit: impl FnMut(&Event),
    ) -> io::Result<Arc<EventLog>> {
        let path = path.into();
        let mut reader = BufReader::new(File::open(&path)?);
        let (mut offset, mut last_seq, mut index) = (0u64, 0u64, Vec::new());
        let mut buf = Vec::new();
        while let Some(len) = read_record(&mut reader, &mut buf)? {
            let Ok(event) = Event::decode(buf.as_slice()) else {
                break;
            };
            if event.seq != last_seq + 1 {
                break;
            }
            if (event.seq - 1) % INDEX_STRIDE == 0 {
                index.push(offset);
            }
            visit(&event);
            last_seq = event.seq;
            offset += len;
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        file.set_len(offset)?;
        Ok(Self::with_writer(task_id.into(), path, file, offset, last_seq, index))
    }

    fn with_writer(
        task_id: String,
        path: PathBuf,
        file: File,
        offset: u64,
        last_seq: u64,
        index: Vec<u64>,
    ) -> Arc<EventLog> {
        let writer = Writer {
            file,
            buf: Vec::with_capacity(256),
            offset,
            last_seq,
            closed: false,
            index,
            window: VecDeque::new(),
            window_bytes: 0,
        };
        let (published, _) = watch::channel(Published { last_seq, closed: false });
        Arc::new(EventLog { task_id, path, writer: Mutex::new(writer), published })
    }

    /// Where the log lives on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What has been published so far.
    pub fn published(&self) -> Published {
        *self.published.borrow()
    }

    /// Appends an event with the next seq and the current time, and publishes it.
    ///
    /// # Errors
    /// The log is closed, or the write failed (the event is then not recorded).
    pub fn append(&self, payload: Payload) -> io::Result<Event> {
        self.append_at(payload, autopilot_contract::time::timestamp(std::time::SystemTime::now()))
    }

    /// [`append`](Self::append) with an explicit timestamp.
    pub fn append_at(&self, payload: Payload, time: pbjson_types::Timestamp) -> io::Result<Event> {
        let mut writer = self.lock();
        if writer.closed {
            return Err(io::Error::other(format!("the event log of task {} is closed", self.task_id)));
        }
        let event =
            Event { task_id: self.task_id.clone(), seq: writer.last_seq + 1, time: Some(time), payload: Some(payload) };
        let writer = &mut *writer;
        writer.buf.clear();
        event.encode_length_delimited(&mut writer.buf).expect("a Vec grows as needed");
        writer.file.write_all(&writer.buf)?;
        if (event.seq - 1) % INDEX_STRIDE == 0 {
            writer.index.push(writer.offset);
        }
        writer.offset += writer.buf.len() as u64;
        writer.last_seq = event.seq;
        writer.window_bytes += writer.buf.len();
        writer.window.push_back(event.clone());
        while writer.window.len() > WINDOW_EVENTS || (writer.window_bytes > WINDOW_BYTES && writer.window.len() > 1) {
            let evicted = writer.window.pop_front().expect("window is not empty");
            writer.window_bytes -= evicted.encoded_len() + prost::length_delimiter_len(evicted.encoded_len());
        }
        self.published.send_replace(Published { last_seq: event.seq, closed: false });
        Ok(event)
    }

    /// Closes the log: no more events will be appended, and subscriptions end once they have
    /// delivered the last one. The in-memory window is released; later readers use the file.
    pub fn close(&self) {
        let mut writer = self.lock();
        if writer.closed {
            return;
        }
        writer.closed = true;
        let _ = writer.file.flush();
        writer.window = VecDeque::new();
        writer.window_bytes = 0;
        self.published.send_replace(Published { last_seq: writer.last_seq, closed: true });
    }

    /// Waits until the log is closed.
    pub async fn closed(&self) {
        let mut rx = self.published.subscribe();
        let _ = rx.wait_for(|p| p.closed).await;
    }

    /// Follows the log from `from_seq` (0 and 1 both mean the first event).
    pub fn subscribe(self: &Arc<Self>, from_seq: u64) -> Subscription {
        Subscription {
            log: Arc::clone(self),
            next_seq: from_seq.max(1),
            published: self.published.subscribe(),
            reader: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves the writer consistent (every field is updated
        // after the write succeeds), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reader of one log, from a seq onwards; each event is delivered exactly once, in order.
pub struct Subscription {
    log: Arc<EventLog>,
    next_seq: u64,
    published: watch::Receiver<Published>,
    reader: Option<FileCursor>,
}

/// A position in the log file: the reader is at the start of the record of `seq`.
struct FileCursor {
    reader: BufReader<File>,
    seq: u64,
    buf: Vec<u8>,
}

impl Subscription {
    /// The next events (at most `max`), waiting for new ones when caught up.
    /// `Ok(None)` once the log is closed and every event has been delivered.
    ///
    /// # Errors
    /// The log file could not be read.
    pub async fn next_batch(&mut self, max: usize) -> io::Result<Option<Vec<Event>>> {
        loop {
            let published = *self.published.borrow_and_update();
            if self.next_seq <= published.last_seq {
                let last = published.last_seq.min(self.next_seq + max.max(1) as u64 - 1);
                let batch = self.read_range(last)?;
                self.next_seq = last + 1;
                return Ok(Some(batch));
            }
            if published.closed {
                return Ok(None);
            }
            if self.published.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Events `next_seq..=last`, from the memory window when it still holds them, else the file.
    fn read_range(&mut self, last: u64) -> io::Result<Vec<Event>> {
        let first = self.next_seq;
        let index_entry = {
            let writer = self.log.lock();
            if let Some(front) = writer.window.front() {
                if front.seq <= first {
                    let start = (first - front.seq) as usize;
                    let end = (last - front.seq) as usize;
                    return Ok(writer.window.range(start..=end).cloned().collect());
                }
            }
            let k = ((first - 1) / INDEX_STRIDE) as usize;
            (k as u64 * INDEX_STRIDE + 1, writer.index[k])
        };
        // Reads of the log hit the page cache and are short (one batch); they run inline rather
        // than on the blocking pool, which would cost more than the read itself.
        self.read_file(first, last, index_entry)
    }

    fn read_file(
        &mut self,
        first: u64,
        last: u64,
        (indexed_seq, indexed_offset): (u64, u64),
    ) -> io::Result<Vec<Event>> {
        let reuse = self.reader.as_ref().is_some_and(|c| c.seq <= first && c.seq >= indexed_seq);
        if !reuse {
            let mut file = File::open(self.log.path())?;
            file.seek(SeekFrom::Start(indexed_offset))?;
            self.reader = Some(FileCursor {
                reader: BufReader::with_capacity(64 * 1024, file),
                seq: indexed_seq,
                buf: Vec::new(),
            });
        }
        let cursor = self.reader.as_mut().expect("cursor was just set");
        let mut events = Vec::with_capacity((last - first + 1) as usize);
        while cursor.seq <= last {
            if read_record(&mut cursor.reader, &mut cursor.buf)?.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("event log ends before seq {}", cursor.seq),
                ));
            }
            if cursor.seq >= first {
                let event = Event::decode(cursor.buf.as_slice()).map_err(io::Error::other)?;
                events.push(event);
            }
            cursor.seq += 1;
        }
        Ok(events)
    }
}

/// Reads one length-delimited record into `buf`; its total size on disk, or `None` at a clean or
/// torn end of file.
fn read_record(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut len: u64 = 0;
    let mut prefix = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte)? == 0 {
            return Ok(None);
        }
        prefix += 1;
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_EVENT_BYTES)
        .ok_or_else(|| io::Error::other("corrupt event log record"))?;
    buf.resize(len, 0);
    match reader.read_exact(buf) {
        Ok(()) => Ok(Some(prefix + len as u64)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::AgentText;

    fn text(i: u64) -> Payload {
        Payload::AgentText(AgentText { text: format!("event {i}") })
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    async fn drain(mut sub: Subscription) -> Vec<Event> {
        let mut all = Vec::new();
        while let Some(batch) = sub.next_batch(100).await.unwrap() {
            all.extend(batch);
        }
        all
    }

    #[tokio::test]
    async fn replays_from_any_seq_across_window_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::create("t", dir.path().join("events.log")).unwrap();
        let total = 3 * INDEX_STRIDE + 17;
        for i in 1..=total {
            log.append(text(i)).unwrap();
        }
        log.close();
        for from in [0, 1, 2, INDEX_STRIDE, INDEX_STRIDE + 1, 2 * INDEX_STRIDE + 500, total, total + 1] {
            let events = drain(log.subscribe(from)).await;
            let expected: Vec<u64> = (from.max(1)..=total).collect();
            assert_eq!(seqs(&events), expected, "from {from}");
        }
        let events = drain(log.subscribe(5)).await;
        assert_eq!(events[0].payload, Some(text(5)));
        assert_eq!(events[0].task_id, "t");
    }

    #[tokio::test]
    async fn a_live_subscriber_sees_every_event_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::create("t", dir.path().join("events.log")).unwrap();
        let early = tokio::spawn(drain(log.subscribe(1)));
        let writer = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for i in 1..=5000 {
                    log.append(text(i)).unwrap();
                    if i % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                log.close();
            })
        };
        let mid = tokio::spawn(drain(log.subscribe(2500)));
        writer.await.unwrap();
        assert_eq!(seqs(&early.await.unwrap()), (1..=5000).collect::<Vec<_>>());
        assert_eq!(seqs(&mid.await.unwrap()), (2500..=5000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn reopening_recovers_events_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let log = EventLog::create("t", &path).unwrap();
        for i in 1..=10 {
            log.append(text(i)).unwrap();
        }
        drop(log);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0x20, 1, 2]).unwrap(); // a record cut short
        let mut visited = 0;
        let log = EventLog::open("t", &path, |_| visited += 1).unwrap();
        assert_eq!((visited, log.published().last_seq), (10, 10));
        log.append(text(11)).unwrap();
        log.close();
        assert_eq!(seqs(&drain(log.subscribe(1)).await), (1..=11).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn appending_to_a_closed_log_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::create("t", dir.path().join("events.log")).unwrap();
        log.close();
        assert!(log.append(text(1)).is_err());
        assert!(drain(log.subscribe(1)).await.is_empty());
    }
}
