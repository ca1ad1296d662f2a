//! Keeps a diff small enough for where it goes. The `diff` event is replayed to every follower
//! (and through the edge to browsers), so it carries at most [`EVENT_MAX_FILES`] files and
//! [`EVENT_MAX_PATCH_BYTES`] of patch text; GetDiff answers from the copy kept on disk, capped
//! only at [`STORED_MAX_PATCH_BYTES`]. Totals always describe the whole diff. Pure.

use autopilot_contract::v1::Diff;

/// Most files listed in the `diff` event (documented in the contract).
pub const EVENT_MAX_FILES: usize = 500;
/// Most patch text, in bytes, in the `diff` event (documented in the contract).
pub const EVENT_MAX_PATCH_BYTES: usize = 256 * 1024;
/// Most patch text kept for GetDiff (documented in the contract); the commit holds the rest.
pub const STORED_MAX_PATCH_BYTES: usize = 64 * 1024 * 1024;

/// `diff` with at most `max_files` files and `max_patch_bytes` of patch text. Patches are kept
/// whole, in order, while they fit; one that does not fit is left out (`patch_omitted`) and later,
/// smaller ones may still be kept. `truncated` says whether anything was left out.
pub fn cap(diff: &Diff, max_files: usize, max_patch_bytes: usize) -> Diff {
    let mut budget = max_patch_bytes;
    let files = diff
        .files
        .iter()
        .take(max_files)
        .map(|file| {
            let mut file = file.clone();
            if file.patch.len() <= budget {
                budget -= file.patch.len();
            } else {
                file.patch = String::new();
                file.patch_omitted = true;
            }
            file
        })
        .collect::<Vec<_>>();
    let truncated = diff.truncated || files.len() < diff.files.len() || files.iter().any(|f| f.patch_omitted);
    Diff { base_commit: diff.base_commit.clone(), stats: diff.stats, files, truncated }
}

/// The diff as the `diff` event carries it.
pub fn for_event(diff: &Diff) -> Diff {
    cap(diff, EVENT_MAX_FILES, EVENT_MAX_PATCH_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{DiffStats, FileDiff};

    fn diff(patch_sizes: &[usize]) -> Diff {
        Diff {
            base_commit: "abc".into(),
            stats: Some(DiffStats { files_changed: patch_sizes.len() as u32, insertions: 9, deletions: 1 }),
            files: patch_sizes
                .iter()
                .enumerate()
                .map(|(i, size)| FileDiff { path: format!("f{i}"), patch: "x".repeat(*size), ..Default::default() })
                .collect(),
            truncated: false,
        }
    }

    #[test]
    fn a_small_diff_passes_whole() {
        let small = diff(&[10, 20]);
        assert_eq!(for_event(&small), small);
    }

    #[test]
    fn patches_that_do_not_fit_are_left_out_and_flagged() {
        let capped = cap(&diff(&[60, 50, 30]), 10, 100);
        let kept: Vec<(usize, bool)> = capped.files.iter().map(|f| (f.patch.len(), f.patch_omitted)).collect();
        assert_eq!(kept, [(60, false), (0, true), (30, false)]);
        assert!(capped.truncated);
        assert_eq!(capped.stats, diff(&[]).stats.map(|s| DiffStats { files_changed: 3, ..s }), "totals unchanged");
    }

    #[test]
    fn files_beyond_the_limit_are_dropped_but_counted() {
        let capped = cap(&diff(&[1; 7]), 5, 1000);
        assert_eq!(capped.files.len(), 5);
        assert!(capped.truncated);
        assert_eq!(capped.stats.unwrap().files_changed, 7);
        let huge = diff(&[EVENT_MAX_PATCH_BYTES + 1]);
        assert!(for_event(&huge).files[0].patch_omitted);
    }
}
