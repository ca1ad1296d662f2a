//! An environment's script's output as the setup phase records it. Pure: bytes in, lines out.
//!
//! - [`OutputLines`] splits what the script writes (stdout and stderr on one pipe, so
//!   interleaved as written) into lines. A carriage return starts the line over, as on a
//!   terminal: a progress bar redrawn a thousand times is one line, its last state, and a CRLF
//!   ending is an ordinary one. A line is kept up to [`KEPT_LINE_BYTES`]; the rest is dropped.
//! - The setup phase masks each line whole, then [`cut`]s it to [`MAX_LINE_BYTES`] (the
//!   contract's 4 KiB): cutting first could leave half a secret, which masking no longer finds.
//!   [`KEPT_LINE_BYTES`] is large enough that a secret starting within the first 4 KiB ends
//!   within what was kept.
//! - [`OutputBook`] records at most [`MAX_RECORDED_LINES`] lines a script (a script that loops
//!   on `echo` must not fill the disk with events), and keeps the last [`TAIL_LINES`] non-empty
//!   ones for the error that ends a failed task, and to close a cut-short record with.

use std::collections::VecDeque;

use crate::validate::MAX_VARIABLE_VALUE_BYTES;

/// Longest line recorded, in bytes (`SetupOutput.line`).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most bytes of one line kept before masking: [`MAX_LINE_BYTES`] plus the longest secret.
pub const KEPT_LINE_BYTES: usize = MAX_LINE_BYTES + MAX_VARIABLE_VALUE_BYTES;
/// Lines a failed script's error quotes.
pub const TAIL_LINES: usize = 20;
/// Most lines recorded from one script.
pub const MAX_RECORDED_LINES: usize = 10_000;

/// Splits a script's output into lines (see the module's doc).
#[derive(Debug, Default)]
pub struct OutputLines {
    line: Vec<u8>,
    /// A carriage return was read: the next byte other than a newline starts the line over.
    carriage_return: bool,
}

impl OutputLines {
    /// Feeds `chunk`; calls `on_line` with each line it completes (without its newline).
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(String)) {
        for &byte in chunk {
            match byte {
                b'\n' => {
                    on_line(String::from_utf8_lossy(&self.line).into_owned());
                    self.line.clear();
                    self.carriage_return = false;
                }
                b'\r' => self.carriage_return = true,
                _ => {
                    if self.carriage_return {
                        self.line.clear();
                        self.carriage_return = false;
                    }
                    if self.line.len() < KEPT_LINE_BYTES {
                        self.line.push(byte);
                    }
                }
            }
        }
    }

    /// The last line, when the output did not end with a newline.
    pub fn finish(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.line);
        (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned())
    }
}

/// `line` cut to at most `max` bytes, at a character boundary.
pub fn cut(mut line: String, max: usize) -> String {
    if line.len() > max {
        let mut end = max;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// What was recorded of a script's output, and its last lines.
#[derive(Debug, Default)]
pub struct OutputBook {
    recorded: usize,
    unrecorded: usize,
    tail: VecDeque<String>,
}

impl OutputBook {
    /// Takes one (masked, cut) line: answers it when it is to be recorded, `None` past the
    /// limit.
    pub fn take(&mut self, line: String) -> Option<String> {
        if !line.trim().is_empty() {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        if self.recorded < MAX_RECORDED_LINES {
            self.recorded += 1;
            Some(line)
        } else {
            self.unrecorded += 1;
            None
        }
    }

    /// The last non-empty lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Lines to record once the script has ended: nothing when every line was recorded; else a
    /// note of how many were not, and the last ones.
    pub fn closing_lines(&self) -> Vec<String> {
        if self.unrecorded == 0 {
            return Vec::new();
        }
        let note = format!(
            "[autopilot] {} more lines were not recorded (at most {MAX_RECORDED_LINES} are); the last ones:",
            self.unrecorded
        );
        std::iter::once(note).chain(self.tail()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = OutputLines::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |line| lines.push(line));
        }
        lines.extend(splitter.finish());
        lines
    }

    #[test]
    fn lines_split_across_chunks_and_a_carriage_return_starts_the_line_over() {
        assert_eq!(lines_of(&[b"one\ntw", b"o\n\nthree"]), ["one", "two", "", "three"]);
        assert_eq!(lines_of(&[b"windows\r\nline\r\n"]), ["windows", "line"]);
        assert_eq!(lines_of(&[b"10%\r50%\r", b"100%\ndone\n"]), ["100%", "done"]);
        assert_eq!(lines_of(&[b"\xffbad utf-8\n"]), ["\u{fffd}bad utf-8"]);
        assert_eq!(lines_of(&[b"ends with a newline\n"]), ["ends with a newline"]);
    }

    #[test]
    fn a_long_line_is_kept_up_to_its_limit_then_cut_at_a_character_boundary() {
        let long = "é".repeat(KEPT_LINE_BYTES);
        let lines = lines_of(&[long.as_bytes(), b"\nnext\n"]);
        assert_eq!(lines[0].len(), KEPT_LINE_BYTES);
        assert_eq!(lines[1], "next");
        let cut_line = cut(lines[0].clone(), MAX_LINE_BYTES);
        assert_eq!(cut_line.len(), MAX_LINE_BYTES, "é is two bytes: 4096 is a boundary");
        assert_eq!(cut(format!("a{}", "é".repeat(3000)), MAX_LINE_BYTES).len(), MAX_LINE_BYTES - 1);
        assert_eq!(cut("short".into(), MAX_LINE_BYTES), "short");
    }

    #[test]
    fn the_book_keeps_the_last_lines_and_records_up_to_its_limit() {
        let mut book = OutputBook::default();
        let recorded = (0..MAX_RECORDED_LINES + 30).filter_map(|i| book.take(format!("line {i}"))).count();
        assert_eq!(recorded, MAX_RECORDED_LINES);
        assert_eq!(book.take(String::new()), None);
        let tail = book.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), &format!("line {}", MAX_RECORDED_LINES + 29));
        let closing = book.closing_lines();
        assert_eq!(closing[0], "[autopilot] 31 more lines were not recorded (at most 10000 are); the last ones:");
        assert_eq!(closing[1..], tail[..]);

        let mut quiet = OutputBook::default();
        assert_eq!(quiet.take("only".into()), Some("only".into()));
        assert_eq!(quiet.take("  ".into()), Some("  ".into()), "blank lines are recorded");
        assert_eq!(quiet.tail(), ["only"], "but not quoted");
        assert!(quiet.closing_lines().is_empty());
    }
}
