//! Reads git's `--progress` output (stderr, lines ended by `\r` or `\n`) into progress events.
//!
//! git prints lines like `Receiving objects:  45% (9/20), 1.2 MiB | 3 MiB/s` and repeats them
//! many times a second; [`ProgressTracker`] keeps only the ones that say something new (a new
//! phase or a new percent), so the event log is not flooded.

use autopilot_contract::v1::GitProgress;

/// Parses one line of git's progress output; `None` for lines that are not progress.
pub fn parse_progress_line(line: &str) -> Option<GitProgress> {
    let line = line.trim();
    let line = line.strip_prefix("remote: ").unwrap_or(line).trim();
    let (phase, rest) = line.split_once(':')?;
    let phase = phase.trim();
    if phase.is_empty() || !phase.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
        return None;
    }
    let rest = rest.trim();
    let (percent, counts) = match rest.split_once('%') {
        Some((p, after)) => (p.trim().parse::<u32>().ok()?, after.trim()),
        None => (u32::MAX, rest),
    };
    // "(9/20)" after a percent, or "20, done." / "9" for phases with counts only.
    let (current, total) = counts
        .strip_prefix('(')
        .and_then(|c| c.split_once(')'))
        .and_then(|(inner, _)| inner.split_once('/'))
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .unwrap_or((0, 0));
    if percent == u32::MAX {
        // Phases without a percent ("Enumerating objects: 20, done.") still count as progress.
        let count: u64 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        return Some(GitProgress { phase: phase.into(), percent: 0, current: count, total: 0, message: line.into() });
    }
    Some(GitProgress { phase: phase.into(), percent: percent.min(100), current, total, message: line.into() })
}

/// Splits a chunk stream into lines on `\r` and `\n`, carrying partial lines across chunks.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk; calls `on_line` for each complete line in it.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&str)) {
        for &byte in chunk {
            if byte == b'\r' || byte == b'\n' {
                if !self.partial.is_empty() {
                    on_line(&String::from_utf8_lossy(&self.partial));
                    self.partial.clear();
                }
            } else if self.partial.len() < 8192 {
                self.partial.push(byte);
            }
        }
    }

    /// The unterminated last line, if any.
    pub fn finish(&mut self, on_line: impl FnOnce(&str)) {
        if !self.partial.is_empty() {
            on_line(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

/// Drops progress lines that repeat the previous phase and percent.
#[derive(Default)]
pub struct ProgressTracker {
    last: Option<(String, u32, u64)>,
}

impl ProgressTracker {
    /// `progress` if it says something new since the last one kept.
    pub fn keep(&mut self, progress: GitProgress) -> Option<GitProgress> {
        let key = (progress.phase.clone(), progress.percent, if progress.percent == 0 { progress.current } else { 0 });
        let done = progress.message.ends_with("done.");
        if self.last.as_ref() == Some(&key) && !done {
            return None;
        }
        self.last = Some(key);
        Some(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percent_lines() {
        let p = parse_progress_line("Receiving objects:  45% (9/20), 1.20 MiB | 3.00 MiB/s").unwrap();
        assert_eq!((p.phase.as_str(), p.percent, p.current, p.total), ("Receiving objects", 45, 9, 20));
        let p = parse_progress_line("remote: Compressing objects: 100% (3/3), done.").unwrap();
        assert_eq!((p.phase.as_str(), p.percent, p.current, p.total), ("Compressing objects", 100, 3, 3));
    }

    #[test]
    fn parses_count_only_lines_and_ignores_others() {
        let p = parse_progress_line("remote: Enumerating objects: 20, done.").unwrap();
        assert_eq!((p.phase.as_str(), p.current), ("Enumerating objects", 20));
        assert!(parse_progress_line("fatal: repository 'x' does not exist").is_none());
        assert!(parse_progress_line("warning: redirecting to https://x/").is_none());
        assert!(parse_progress_line("").is_none());
    }

    #[test]
    fn splits_on_carriage_returns_across_chunks() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        splitter.feed(b"Receiving objects:  1% (1/100)\rReceiving obj", |l| lines.push(l.to_string()));
        splitter.feed(b"ects:  2% (2/100)\r\nfatal: x", |l| lines.push(l.to_string()));
        splitter.finish(|l| lines.push(l.to_string()));
        assert_eq!(lines, ["Receiving objects:  1% (1/100)", "Receiving objects:  2% (2/100)", "fatal: x"]);
    }

    #[test]
    fn tracker_keeps_only_changes() {
        let mut tracker = ProgressTracker::default();
        let line = |s| parse_progress_line(s).unwrap();
        assert!(tracker.keep(line("Receiving objects:  1% (1/100)")).is_some());
        assert!(tracker.keep(line("Receiving objects:  1% (1/100), 10 KiB")).is_none());
        assert!(tracker.keep(line("Receiving objects:  2% (2/100)")).is_some());
        assert!(tracker.keep(line("Resolving deltas:   2% (2/100)")).is_some());
        assert!(tracker.keep(line("Resolving deltas: 100% (100/100), done.")).is_some());
    }
}
