//! Whether a prepared workspace's setup changed this machine's system packages. A setup that
//! installs them (`apk add`, `apt-get install`) leaves them outside the workspace, so a prepared
//! copy restored into a new container lacks them: there the setup script must run again, not the
//! maintenance script. The package database's digest after a fresh setup is kept in the
//! workspace's `.git` (in no diff, and copied and restored with it) when the setup changed it;
//! a prepared workspace whose digest is not this machine's runs its setup again.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The package databases looked at, the first that exists: Alpine's apk, then Debian's dpkg.
const PACKAGE_DATABASES: [&str; 2] = ["/lib/apk/db/installed", "/var/lib/dpkg/status"];
/// Where the digest is kept, under the workspace.
const MARKER: &str = ".git/autopilot-system-packages";

/// The digest of this machine's package database; `None` when it has none of those known.
pub fn fingerprint() -> Option<String> {
    PACKAGE_DATABASES.iter().find_map(|path| std::fs::read(path).ok()).map(|db| digest(&db))
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Notes in `workspace` that its setup left the packages at `after`, if they changed from
/// `before`. Best effort: without the note the workspace is used as any other.
pub fn note_change(workspace: &Path, before: Option<&str>, after: Option<&str>) {
    if let (Some(after), true) = (after, before != after) {
        if let Err(error) = std::fs::write(workspace.join(MARKER), after) {
            tracing::warn!(%error, "could not note that a setup changed the system packages");
        }
    }
}

/// Whether the prepared `workspace` needs system packages this machine (at `now`) lacks.
pub fn missing(workspace: &Path, now: Option<&str>) -> bool {
    std::fs::read_to_string(workspace.join(MARKER)).is_ok_and(|noted| Some(noted.trim()) != now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_needs_the_packages_its_setup_added_and_only_those() {
        let workspace = tempfile::tempdir().unwrap();
        std::fs::create_dir(workspace.path().join(".git")).unwrap();
        let (before, after) = (digest(b"musl\n"), digest(b"musl\nlibpq\n"));
        note_change(workspace.path(), Some(&before), Some(&before));
        assert!(!missing(workspace.path(), Some(&before)), "a setup that added nothing needs nothing");
        note_change(workspace.path(), Some(&before), Some(&after));
        assert!(!missing(workspace.path(), Some(&after)), "on the machine that ran it");
        assert!(missing(workspace.path(), Some(&before)), "on a machine without what it added");
        assert!(missing(workspace.path(), None));
    }
}
