//! What a task's push through the git gateway may do, and how a refusal reaches git: the commands
//! at the start of a `git-receive-pack` request (`<old> <new> <ref>`, the first with the client's
//! capabilities after a NUL) are read and checked before anything reaches GitHub. A task may
//! create or update its own branch only: no other branch, no tag, no deletion. A refused push is
//! answered in git's own report-status (in the side band when the client asked for one), so git
//! prints `! [remote rejected] <ref> (<reason>)` and the task's error quotes it.

use super::pkt_line::{self, PktLine, FLUSH};

/// The most ref updates one push may carry (a task pushes one branch).
pub const MAX_REF_UPDATES: usize = 32;

/// One command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

/// The commands of a push and the capabilities its client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub updates: Vec<RefUpdate>,
    pub capabilities: Vec<String>,
}

impl Push {
    /// Whether the client reads the answer in side band 1 (`side-band-64k` or `side-band`).
    pub fn side_band(&self) -> bool {
        self.capabilities.iter().any(|c| c == "side-band-64k" || c == "side-band")
    }
}

/// The most of a push's start read to find its commands (they come first, before the pack).
pub const MAX_COMMANDS_BYTES: usize = 1 << 20;

/// What the start of a receive-pack body tells so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// More of the body is needed to read the commands.
    NeedMore,
    /// git's probe (a lone flush, sent before a large push to check the credentials): relayed.
    Probe,
    Push(Push),
}

/// Reads what the start of a receive-pack body (`prefix`, as much as has arrived) says.
///
/// # Errors
/// As [`read_push`], and when the commands do not end within [`MAX_COMMANDS_BYTES`].
pub fn read_start(prefix: &[u8]) -> Result<Start, String> {
    if prefix == FLUSH {
        return Ok(Start::Probe);
    }
    let mut rest = prefix;
    loop {
        match pkt_line::read(rest) {
            Ok((PktLine::Flush, _)) => return read_push(prefix).map(Start::Push),
            Ok((_, after)) => rest = after,
            Err(pkt_line::PktError::Truncated) if prefix.len() < MAX_COMMANDS_BYTES => return Ok(Start::NeedMore),
            Err(pkt_line::PktError::Truncated) => return Err("a push's commands do not end within 1 MiB".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads the commands at the start of a receive-pack request body (up to the flush).
///
/// # Errors
/// Why the request is not a push git would send, in words (malformed pkt-lines or commands, more
/// than [`MAX_REF_UPDATES`] updates).
pub fn read_push(body: &[u8]) -> Result<Push, String> {
    let mut rest = body;
    let mut updates = Vec::new();
    let mut capabilities = Vec::new();
    loop {
        let (line, after) = pkt_line::read(rest).map_err(|e| e.to_string())?;
        rest = after;
        let data = match line {
            PktLine::Flush => break,
            PktLine::Data(data) => data,
            _ => return Err("a push's commands end with a flush".into()),
        };
        // A push from a shallow clone names its shallow commits first.
        if updates.is_empty() && data.starts_with(b"shallow ") {
            continue;
        }
        if updates.len() == MAX_REF_UPDATES {
            return Err(format!("a push through the gateway updates at most {MAX_REF_UPDATES} refs"));
        }
        let (command, caps) = match data.iter().position(|b| *b == 0) {
            Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
            None => (data, None),
        };
        if let (Some(caps), true) = (caps, updates.is_empty()) {
            let caps = String::from_utf8_lossy(caps);
            capabilities = caps.split_whitespace().map(str::to_string).collect();
        }
        let command = std::str::from_utf8(command).map_err(|_| "a push command is not text".to_string())?;
        let mut parts = command.trim_end_matches('\n').splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a push command is not `<old> <new> <ref>`".into());
        };
        let object_id = |id: &str| matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !object_id(old) || !object_id(new) || name.is_empty() {
            return Err("a push command is not `<old> <new> <ref>`".into());
        }
        updates.push(RefUpdate { old: old.into(), new: new.into(), name: name.into() });
    }
    if updates.is_empty() {
        return Err("the push updates no ref".into());
    }
    Ok(Push { updates, capabilities })
}

/// Why `update` is refused for a task that pushes only to `branch`; `None` if it is allowed.
pub fn refusal(update: &RefUpdate, branch: &str) -> Option<String> {
    let own = format!("refs/heads/{branch}");
    if update.new.bytes().all(|b| b == b'0') {
        return Some("autopilot does not delete branches".into());
    }
    if update.name.starts_with("refs/tags/") {
        return Some("autopilot does not push tags".into());
    }
    (update.name != own).then(|| format!("autopilot pushes only to {branch}"))
}

/// The refusals of a push for a task that pushes only to `branch`, one per update (`None` where
/// allowed); all `None` when the push may go on.
pub fn verdicts(push: &Push, branch: &str) -> Vec<Option<String>> {
    let mut verdicts: Vec<Option<String>> = push.updates.iter().map(|update| refusal(update, branch)).collect();
    if verdicts.iter().any(Option::is_some) {
        // A push is taken whole or not at all.
        for verdict in verdicts.iter_mut().filter(|v| v.is_none()) {
            *verdict = Some("not pushed: another ref of this push was refused".into());
        }
    }
    verdicts
}

/// The report-status answer refusing `push` with `verdicts` (see [`verdicts`]).
pub fn refusal_report(push: &Push, verdicts: &[Option<String>]) -> Vec<u8> {
    let mut report = pkt_line::encode(b"unpack ok\n");
    for (update, verdict) in push.updates.iter().zip(verdicts) {
        let line = match verdict {
            Some(reason) => format!("ng {} {}\n", update.name, reason.replace('\n', " ")),
            None => format!("ok {}\n", update.name),
        };
        report.extend(pkt_line::encode(line.as_bytes()));
    }
    report.extend_from_slice(FLUSH);
    if !push.side_band() {
        return report;
    }
    // In side band 1, in pieces a pkt-line holds, then the outer flush.
    let mut banded = Vec::new();
    for piece in report.chunks(pkt_line::MAX_PKT_LEN - 5) {
        banded.extend(pkt_line::encode(&[&[1u8][..], piece].concat()));
    }
    banded.extend_from_slice(FLUSH);
    banded
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO_ID: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn body(commands: &[(&str, &str, &str)], caps: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (old, new, name)) in commands.iter().enumerate() {
            let line = match i {
                0 => format!("{old} {new} {name}\0{caps}\n"),
                _ => format!("{old} {new} {name}\n"),
            };
            body.extend(pkt_line::encode(line.as_bytes()));
        }
        body.extend_from_slice(FLUSH);
        body.extend_from_slice(b"PACK...");
        body
    }

    #[test]
    fn a_push_of_the_tasks_own_branch_goes_on() {
        let push = read_push(&body(&[(ZERO_ID, A, "refs/heads/autopilot/t1")], "report-status side-band-64k")).unwrap();
        assert_eq!(push.updates[0].name, "refs/heads/autopilot/t1");
        assert!(push.side_band());
        assert_eq!(verdicts(&push, "autopilot/t1"), [None]);
        let update = RefUpdate { old: A.into(), new: B.into(), name: "refs/heads/autopilot/t1".into() };
        assert_eq!(refusal(&update, "autopilot/t1"), None, "an update of it too");
    }

    #[test]
    fn a_push_from_a_shallow_clone_names_its_shallow_commits_first() {
        let mut shallow = pkt_line::encode(format!("shallow {A}\n").as_bytes());
        shallow.extend(body(&[(ZERO_ID, B, "refs/heads/autopilot/t1")], "report-status-v2 side-band-64k"));
        let push = read_push(&shallow).unwrap();
        assert_eq!(push.updates.len(), 1);
        assert!(push.side_band());
    }

    #[test]
    fn other_branches_tags_and_deletions_are_refused_each_with_its_reason() {
        let push = read_push(&body(
            &[
                (A, B, "refs/heads/main"),
                (ZERO_ID, A, "refs/tags/v1"),
                (A, ZERO_ID, "refs/heads/autopilot/t1"),
                (A, B, "refs/heads/autopilot/t1"),
            ],
            "report-status",
        ))
        .unwrap();
        let verdicts = verdicts(&push, "autopilot/t1");
        assert_eq!(verdicts[0].as_deref(), Some("autopilot pushes only to autopilot/t1"));
        assert_eq!(verdicts[1].as_deref(), Some("autopilot does not push tags"));
        assert_eq!(verdicts[2].as_deref(), Some("autopilot does not delete branches"));
        assert_eq!(verdicts[3].as_deref(), Some("not pushed: another ref of this push was refused"));
        let report = refusal_report(&push, &verdicts);
        let text = String::from_utf8_lossy(&report);
        assert!(text.starts_with("000eunpack ok\n"), "{text}");
        assert!(text.contains("ng refs/heads/main autopilot pushes only to autopilot/t1\n"), "{text}");
        assert!(text.ends_with("0000"), "{text}");
    }

    #[test]
    fn in_the_side_band_the_report_travels_in_band_one() {
        let push = read_push(&body(&[(A, B, "refs/heads/main")], "report-status side-band-64k")).unwrap();
        let report = refusal_report(&push, &verdicts(&push, "autopilot/t1"));
        let (PktLine::Data(first), _) = pkt_line::read(&report).unwrap() else { panic!("a data line") };
        assert_eq!(first[0], 1, "band 1");
        assert!(first[1..].starts_with(b"000eunpack ok\n"));
    }

    #[test]
    fn the_commands_are_read_once_they_have_all_arrived() {
        let whole = body(&[(A, B, "refs/heads/autopilot/t1")], "report-status");
        assert_eq!(read_start(&whole[..10]), Ok(Start::NeedMore));
        assert!(matches!(read_start(&whole), Ok(Start::Push(_))));
        assert_eq!(read_start(FLUSH), Ok(Start::Probe), "git's probe before a large push");
        assert!(read_start(b"zzzz").is_err());
    }

    #[test]
    fn what_git_would_never_send_is_refused_in_words() {
        let many: Vec<(&str, &str, &str)> = (0..1000).map(|_| (A, B, "refs/heads/x")).collect();
        assert!(read_push(&body(&many, "")).unwrap_err().contains("at most 32 refs"));
        assert!(read_push(b"0000").unwrap_err().contains("no ref"));
        assert!(read_push(b"zzzz").is_err());
        assert!(read_push(&pkt_line::encode(b"not a command\n")).is_err());
        let bad_id = body(&[("xyz", B, "refs/heads/a")], "");
        assert!(read_push(&bad_id).unwrap_err().contains("<old> <new> <ref>"));
    }
}
