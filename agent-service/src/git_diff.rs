//! Turns what `git diff` prints into the contract's [`Diff`]: the file list with statuses
//! (`--name-status -z`), line counts (`--numstat -z`) and each file's unified diff (the patch,
//! split at its `diff --git` headers). Pure: the delivery step runs git, this reads its output.
//!
//! All three come from the same `git diff --cached -M <base>`, so they list the same files in the
//! same order; entries are still matched by path, and a mismatch is an error rather than a diff
//! that quietly pairs the wrong counts with a file.

use std::collections::HashMap;

use autopilot_contract::v1::{Diff, DiffStats, FileChangeStatus, FileDiff};

/// One entry of `--name-status -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStatus {
    pub status: FileChangeStatus,
    /// The path after the change (before it, for a deletion).
    pub path: String,
    /// For a rename, the path before it.
    pub old_path: String,
}

/// One entry of `--numstat -z`: line counts, or `None` for a binary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumStat {
    pub counts: Option<(u32, u32)>,
    pub path: String,
}

/// Output git printed that this module does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected git diff output: {0}")]
pub struct ParseError(String);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses `git diff --name-status -z` (with rename detection): `S\0path\0`, or `R<score>\0old\0new\0`.
///
/// # Errors
/// An unknown status letter or a truncated entry.
pub fn parse_name_status(out: &[u8]) -> Result<Vec<NameStatus>, ParseError> {
    let mut fields = out.split(|b| *b == 0).filter(|f| !f.is_empty());
    let mut entries = Vec::new();
    while let Some(code) = fields.next() {
        let mut next_path =
            || fields.next().map(text).ok_or_else(|| ParseError(format!("{} without a path", text(code))));
        let status = match code.first() {
            Some(b'A') => FileChangeStatus::Added,
            // T is a type change (e.g. a file became a symlink): its content changed too.
            Some(b'M' | b'T') => FileChangeStatus::Modified,
            Some(b'D') => FileChangeStatus::Deleted,
            Some(b'R') => FileChangeStatus::Renamed,
            // Copies are only reported with -C, which the service does not pass; a copy is an addition.
            Some(b'C') => FileChangeStatus::Added,
            _ => return Err(ParseError(format!("unknown status {:?}", text(code)))),
        };
        let entry = if matches!(code.first(), Some(b'R' | b'C')) {
            let old_path = next_path()?;
            let path = next_path()?;
            let old_path = if status == FileChangeStatus::Renamed { old_path } else { String::new() };
            NameStatus { status, path, old_path }
        } else {
            NameStatus { status, path: next_path()?, old_path: String::new() }
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// Parses `git diff --numstat -z`: `ins\tdel\tpath\0`, or `ins\tdel\t\0old\0new\0` for a rename;
/// a binary file has `-` for both counts.
///
/// # Errors
/// A malformed entry.
pub fn parse_numstat(out: &[u8]) -> Result<Vec<NumStat>, ParseError> {
    let mut fields = out.split(|b| *b == 0);
    let mut entries = Vec::new();
    while let Some(field) = fields.next() {
        if field.is_empty() {
            continue;
        }
        let mut parts = field.splitn(3, |b| *b == b'\t');
        let (Some(ins), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError(format!("numstat entry {:?}", text(field))));
        };
        let counts = match (ins, del) {
            (b"-", b"-") => None,
            _ => {
                let number =
                    |n: &[u8]| text(n).parse::<u32>().map_err(|_| ParseError(format!("line count {:?}", text(n))));
                Some((number(ins)?, number(del)?))
            }
        };
        let path = if path.is_empty() {
            // A rename: the old path, then the new one, each in its own field.
            let _old = fields.next().ok_or_else(|| ParseError("rename without its old path".into()))?;
            text(fields.next().ok_or_else(|| ParseError("rename without its new path".into()))?)
        } else {
            text(path)
        };
        entries.push(NumStat { counts, path });
    }
    Ok(entries)
}

/// Splits a whole `git diff` patch into one text per file, at each line starting `diff --git `.
/// (A content line can never start that way: the patch prefixes it with ' ', '+' or '-'.)
pub fn split_patch(patch: &[u8]) -> Vec<String> {
    const HEADER: &[u8] = b"diff --git ";
    let mut starts: Vec<usize> = Vec::new();
    let mut line_start = 0;
    while line_start < patch.len() {
        if patch[line_start..].starts_with(HEADER) {
            starts.push(line_start);
        }
        line_start = match patch[line_start..].iter().position(|b| *b == b'\n') {
            Some(end) => line_start + end + 1,
            None => patch.len(),
        };
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| text(&patch[start..starts.get(i + 1).copied().unwrap_or(patch.len())]))
        .collect()
}

/// Assembles the diff from `base`, the file list, the counts, and the per-file patches (in the
/// file list's order; `None` when the patch text is not available, e.g. too large to keep).
///
/// # Errors
/// The three listings do not describe the same files.
pub fn build_diff(
    base_commit: &str,
    names: Vec<NameStatus>,
    numstat: Vec<NumStat>,
    patches: Option<Vec<String>>,
) -> Result<Diff, ParseError> {
    if names.len() != numstat.len() {
        return Err(ParseError(format!("{} files listed but {} counted", names.len(), numstat.len())));
    }
    if let Some(patches) = &patches {
        if patches.len() != names.len() {
            return Err(ParseError(format!("{} files listed but {} patches", names.len(), patches.len())));
        }
    }
    let mut counts: HashMap<String, Option<(u32, u32)>> = numstat.into_iter().map(|n| (n.path, n.counts)).collect();
    let mut patches = patches.map(Vec::into_iter);
    let mut stats = DiffStats::default();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let counts =
            counts.remove(&name.path).ok_or_else(|| ParseError(format!("no line counts for {:?}", name.path)))?;
        let (insertions, deletions) = counts.unwrap_or((0, 0));
        stats.files_changed += 1;
        stats.insertions += u64::from(insertions);
        stats.deletions += u64::from(deletions);
        let patch = patches.as_mut().and_then(Iterator::next);
        files.push(FileDiff {
            path: name.path,
            old_path: name.old_path,
            status: name.status as i32,
            insertions,
            deletions,
            binary: counts.is_none(),
            patch_omitted: patch.is_none(),
            patch: patch.unwrap_or_default(),
        });
    }
    let truncated = files.iter().any(|f| f.patch_omitted);
    Ok(Diff { base_commit: base_commit.to_string(), stats: Some(stats), files, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileChangeStatus::*;

    #[test]
    fn name_status_covers_every_kind_of_change() {
        let out = b"M\0main.rs\0A\0NOTES.md\0D\0old.txt\0R087\0README.md\0README.txt\0T\0link\0";
        let entries = parse_name_status(out).unwrap();
        let got: Vec<(FileChangeStatus, &str, &str)> =
            entries.iter().map(|e| (e.status, e.path.as_str(), e.old_path.as_str())).collect();
        assert_eq!(
            got,
            [
                (Modified, "main.rs", ""),
                (Added, "NOTES.md", ""),
                (Deleted, "old.txt", ""),
                (Renamed, "README.txt", "README.md"),
                (Modified, "link", "")
            ]
        );
        assert_eq!(parse_name_status(b"").unwrap(), []);
        assert!(parse_name_status(b"X\0a\0").is_err());
        assert!(parse_name_status(b"R100\0only-old\0").is_err());
    }

    #[test]
    fn numstat_reads_counts_binaries_and_renames() {
        let out = b"3\t1\tmain.rs\0-\t-\tlogo.png\0" as &[u8];
        let rename = b"0\t0\t\0README.md\0README.txt\0" as &[u8];
        let entries = parse_numstat(&[out, rename].concat()).unwrap();
        assert_eq!(
            entries,
            [
                NumStat { counts: Some((3, 1)), path: "main.rs".into() },
                NumStat { counts: None, path: "logo.png".into() },
                NumStat { counts: Some((0, 0)), path: "README.txt".into() },
            ]
        );
        assert!(parse_numstat(b"x\t1\ta\0").is_err());
        assert!(parse_numstat(b"1\t1\0").is_err());
    }

    #[test]
    fn patches_split_at_file_headers_only() {
        let first = b"diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-diff --git x\n+y\n" as &[u8];
        let patch = [first, b"diff --git a/b b/b\nnew file mode 100644\n"].concat();
        let parts = split_patch(&patch);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].starts_with("diff --git a/a b/a\n") && parts[0].ends_with("+y\n"));
        assert_eq!(parts[1], "diff --git a/b b/b\nnew file mode 100644\n");
        assert!(split_patch(b"").is_empty());
    }

    #[test]
    fn the_diff_pairs_counts_and_patches_with_files_and_sums_them() {
        let names = parse_name_status(b"M\0main.rs\0A\0logo.png\0").unwrap();
        let numstat = parse_numstat(b"3\t1\tmain.rs\0-\t-\tlogo.png\0").unwrap();
        let patches = vec!["diff --git a/main.rs b/main.rs\n".to_string(), "diff --git a/logo.png b/logo.png\n".into()];
        let diff = build_diff("abc", names.clone(), numstat.clone(), Some(patches)).unwrap();
        assert_eq!(diff.base_commit, "abc");
        assert_eq!(diff.stats, Some(DiffStats { files_changed: 2, insertions: 3, deletions: 1 }));
        assert!(!diff.truncated);
        let png = &diff.files[1];
        assert_eq!((png.status(), png.binary, png.insertions, png.patch_omitted), (Added, true, 0, false));
        assert!(diff.files[0].patch.starts_with("diff --git a/main.rs"));

        let without_patches = build_diff("abc", names.clone(), numstat.clone(), None).unwrap();
        assert!(without_patches.truncated && without_patches.files.iter().all(|f| f.patch_omitted));
        assert!(build_diff("abc", names.clone(), numstat[..1].to_vec(), None).is_err());
        let other = parse_numstat(b"3\t1\tmain.rs\0-\t-\tother.png\0").unwrap();
        assert!(build_diff("abc", names, other, None).is_err());
    }

    #[test]
    fn no_change_is_an_empty_diff() {
        let diff = build_diff("abc", vec![], vec![], Some(vec![])).unwrap();
        assert!(diff.files.is_empty() && !diff.truncated);
        assert_eq!(diff.stats.unwrap().files_changed, 0);
    }
}
