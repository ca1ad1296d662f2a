//! Prepared workspaces, kept on this machine: after an environment's setup script succeeds on a
//! fresh clone, a copy of the workspace is kept under its key ([`crate::prepared_key`]), and the
//! next task with the same key starts from a copy of that copy instead of a clone, so what the
//! setup installed (`node_modules`, `target/`...) is there at once. Thin glue over `cp -a`
//! (GNU's and busybox's alike; GNU's clones blocks where the file system can).
//!
//! - Writing one never disturbs a reader: the new copy is made under an `.incoming-` name, then
//!   renamed into its key's place; the copy it replaces is renamed away and removed. Copies out
//!   of a prepared workspace hold its key's lock shared, replacing or evicting it holds it
//!   exclusively, so a copy never sees its source swapped midway.
//! - Its `.git/config` is the clone's own, as it was before the setup ran: a task's delivery
//!   restores the config it found at the start ([`crate::delivery`]), and a script's (or a
//!   dependency's install script's) additions must not become that for the next task. (Agents
//!   run as the service's user and could reach this directory, so a task starting from a copy
//!   also has git write it a new config: [`crate::git_clone::renew_git_config`].)
//! - At most [`MAX_PREPARED`] are kept; the least recently used (copied out or written) go.
//! - Copies are stopped with the task (their process group ends); what a service stopped
//!   halfway leaves is removed when the next one starts.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{
    io::AsyncReadExt,
    sync::{OwnedRwLockReadGuard, RwLock},
};
use tokio_util::sync::CancellationToken;

use crate::{
    prepared_key::{
        incoming_dir, is_key, is_leftover, outgoing_dir, to_evict, workspace_dir, MAX_PREPARED, PREPARED_DIR,
    },
    process_group::{spawn_group, terminate_group},
};

/// Why a copy did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The task was told to stop; the copy was stopped.
    Stopped,
    /// What went wrong, for people.
    Failed(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Stopped => f.write_str("stopped"),
            CopyError::Failed(why) => f.write_str(why),
        }
    }
}

/// Most of `cp`'s error output kept for a message.
const MAX_CP_ERROR_BYTES: u64 = 4096;

/// The prepared workspaces of this service.
pub struct PreparedWorkspaces {
    /// `<work_dir>/prepared`.
    root: PathBuf,
    /// How long a stopped copy gets between SIGTERM and SIGKILL.
    grace: Duration,
    /// One lock per key: shared while copying out, exclusive while replacing or removing.
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl PreparedWorkspaces {
    /// The prepared workspaces under `work_dir`, the directory created if need be, and what a
    /// service stopped halfway left removed.
    ///
    /// # Errors
    /// The directory could not be created or listed.
    pub fn open(work_dir: &Path, grace: Duration) -> io::Result<PreparedWorkspaces> {
        let root = work_dir.join(PREPARED_DIR);
        std::fs::create_dir_all(&root)?;
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(is_leftover) {
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), %error, "could not remove a half-made prepared workspace");
                }
            }
        }
        Ok(PreparedWorkspaces { root, grace, locks: Mutex::default() })
    }

    /// Copies the prepared workspace of `key` to `dest` (which must not exist); answers whether
    /// there was one.
    ///
    /// # Errors
    /// Stopped, or the copy failed (what it left at `dest` is the caller's to remove).
    pub async fn copy_into(&self, key: &str, dest: &Path, stop: &CancellationToken) -> Result<bool, CopyError> {
        let lock = self.lock_of(key);
        let _reading = lock.read().await;
        let source = workspace_dir(&self.root, key);
        // Not through a symlink (an agent shares the service's user): the copy would be one.
        if !std::fs::symlink_metadata(&source).is_ok_and(|meta| meta.is_dir()) {
            return Ok(false);
        }
        mark_used(&source);
        copy_tree(&source, dest, stop, self.grace).await.map(|()| true)
    }

    /// Keeps a copy of `workspace` as the prepared workspace of `key`, with `clean_git_config`
    /// as its `.git/config`, replacing the one there was; then evicts the least recently used
    /// past [`MAX_PREPARED`].
    ///
    /// # Errors
    /// Stopped, or the copy failed; nothing is kept then.
    pub async fn keep(
        &self,
        key: &str,
        workspace: &Path,
        clean_git_config: &[u8],
        stop: &CancellationToken,
    ) -> Result<(), CopyError> {
        let incoming = self.incoming();
        let made = async {
            copy_tree(workspace, &incoming, stop, self.grace).await?;
            let config = incoming.join(".git").join("config");
            // Removed first: a symlink a script put there must not be written through.
            let _ = std::fs::remove_file(&config);
            std::fs::write(&config, clean_git_config)
                .map_err(|e| CopyError::Failed(format!("could not reset the copy's git config: {e}")))
        }
        .await;
        if let Err(error) = made {
            remove_in_background(incoming);
            return Err(error);
        }
        self.place(key, incoming).await
    }

    /// A new directory's path for [`Self::place`] to put in place once it is filled (a
    /// workspace brought from the edge's store, say); nothing is made there yet.
    pub fn incoming(&self) -> PathBuf {
        incoming_dir(&self.root, &uuid::Uuid::new_v4().to_string())
    }

    /// Puts the filled `incoming` ([`Self::incoming`]) in the place of `key`'s prepared
    /// workspace, replacing the one there was; then evicts the least recently used past
    /// [`MAX_PREPARED`].
    ///
    /// # Errors
    /// A rename failed; nothing is kept then (and `incoming` is removed).
    pub async fn place(&self, key: &str, incoming: PathBuf) -> Result<(), CopyError> {
        let target = workspace_dir(&self.root, key);
        let replaced = {
            let lock = self.lock_of(key);
            let _writing = lock.write().await;
            let outgoing = outgoing_dir(&self.root, &uuid::Uuid::new_v4().to_string());
            let moved_away = match std::fs::rename(&target, &outgoing) {
                Ok(()) => Some(outgoing),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    remove_in_background(incoming);
                    return Err(CopyError::Failed(format!("could not replace the prepared workspace: {e}")));
                }
            };
            if let Err(e) = std::fs::rename(&incoming, &target) {
                remove_in_background(incoming);
                moved_away.into_iter().for_each(remove_in_background);
                return Err(CopyError::Failed(format!("could not put the prepared workspace in place: {e}")));
            }
            mark_used(&target);
            moved_away
        };
        replaced.into_iter().for_each(remove_in_background);
        self.evict().await;
        Ok(())
    }

    /// Whether there is a prepared workspace of `key`.
    pub fn has(&self, key: &str) -> bool {
        std::fs::symlink_metadata(workspace_dir(&self.root, key)).is_ok_and(|meta| meta.is_dir())
    }

    /// The prepared workspace of `key`, held so that nothing replaces or evicts it until the
    /// guard is dropped (to be read: sent to the edge's store); `None` if there is none.
    pub async fn reading(&self, key: &str) -> Option<(OwnedRwLockReadGuard<()>, PathBuf)> {
        let guard = self.lock_of(key).read_owned().await;
        let dir = workspace_dir(&self.root, key);
        std::fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir()).then_some((guard, dir))
    }

    /// Removes the least recently used prepared workspaces past [`MAX_PREPARED`].
    async fn evict(&self) {
        let kept = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok().filter(|name| is_key(name))?;
                    Some((name, entry.metadata().ok()?.modified().ok()?))
                })
                .collect(),
            Err(error) => {
                tracing::warn!(root = %self.root.display(), %error, "could not list the prepared workspaces");
                return;
            }
        };
        for key in to_evict(kept, MAX_PREPARED) {
            let lock = self.lock_of(&key);
            let _writing = lock.write().await;
            let outgoing = outgoing_dir(&self.root, &uuid::Uuid::new_v4().to_string());
            match std::fs::rename(workspace_dir(&self.root, &key), &outgoing) {
                Ok(()) => {
                    tracing::info!(%key, "evicted the least recently used prepared workspace");
                    remove_in_background(outgoing);
                }
                Err(error) => tracing::warn!(%key, %error, "could not evict a prepared workspace"),
            }
        }
    }

    fn lock_of(&self, key: &str) -> Arc<RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(key.to_string()).or_default())
    }
}

/// Notes that the prepared workspace at `dir` was just used (its modification time, which
/// eviction goes by). Best effort.
fn mark_used(dir: &Path) {
    let touched = std::fs::File::open(dir).and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::warn!(dir = %dir.display(), %error, "could not note the use of a prepared workspace");
    }
}

/// Removes `dir` and all below it, off the async threads. Best effort.
pub fn remove_in_background(dir: PathBuf) {
    tokio::task::spawn_blocking(move || {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "could not remove a prepared workspace's copy");
            }
        }
    });
}

/// Copies the tree at `source` to `dest` (which must not exist) with `cp -a`: links, modes,
/// times and hard links kept, so build tools that go by times see their outputs up to date.
///
/// # Errors
/// Stopped (cp's process group ended), or cp's own words.
async fn copy_tree(source: &Path, dest: &Path, stop: &CancellationToken, grace: Duration) -> Result<(), CopyError> {
    let mut command = tokio::process::Command::new("cp");
    command
        .arg("-a")
        .arg("--")
        .arg(source)
        .arg(dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_group(&mut command).map_err(|e| CopyError::Failed(format!("could not run cp: {e}")))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let said = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.take(MAX_CP_ERROR_BYTES).read_to_string(&mut text).await;
        text
    });
    let status = tokio::select! {
        biased;
        () = stop.cancelled() => {
            let _ = terminate_group(&mut child, grace).await;
            return Err(CopyError::Stopped);
        }
        status = child.wait() => status.map_err(|e| CopyError::Failed(format!("cp failed: {e}")))?,
    };
    if status.success() {
        return Ok(());
    }
    let said = said.await.unwrap_or_default();
    let said = said.trim();
    Err(CopyError::Failed(if said.is_empty() { format!("cp ended with {status}") } else { format!("cp: {said}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kept_workspace_is_copied_out_with_its_clean_git_config_and_replaced_whole() {
        let work = tempfile::tempdir().unwrap();
        let prepared = PreparedWorkspaces::open(work.path(), Duration::from_secs(1)).unwrap();
        let stop = CancellationToken::new();
        let key = "a".repeat(64);
        let dest = work.path().join("task-1");
        assert_eq!(prepared.copy_into(&key, &dest, &stop).await, Ok(false), "nothing kept yet");
        assert!(!dest.exists());

        let workspace = work.path().join("workspace");
        std::fs::create_dir_all(workspace.join(".git")).unwrap();
        std::fs::create_dir_all(workspace.join("node_modules/dep")).unwrap();
        std::fs::write(workspace.join(".git/config"), "[core]\n\thooksPath = .husky\n").unwrap();
        std::fs::write(workspace.join("node_modules/dep/index.js"), "module.exports = 1\n").unwrap();
        std::os::unix::fs::symlink("dep/index.js", workspace.join("node_modules/link.js")).unwrap();
        prepared.keep(&key, &workspace, b"[core]\n\tbare = false\n", &stop).await.unwrap();

        prepared.copy_into(&key, &dest, &stop).await.unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("node_modules/dep/index.js")).unwrap(), "module.exports = 1\n");
        assert_eq!(std::fs::read_link(dest.join("node_modules/link.js")).unwrap(), Path::new("dep/index.js"));
        assert_eq!(std::fs::read_to_string(dest.join(".git/config")).unwrap(), "[core]\n\tbare = false\n");

        // A new setup replaces it whole: what the old one had and the new one has not is gone.
        std::fs::remove_dir_all(workspace.join("node_modules")).unwrap();
        std::fs::write(workspace.join("NEW.txt"), "new\n").unwrap();
        prepared.keep(&key, &workspace, b"", &stop).await.unwrap();
        let second = work.path().join("task-2");
        prepared.copy_into(&key, &second, &stop).await.unwrap();
        assert!(second.join("NEW.txt").exists() && !second.join("node_modules").exists());
        let names: Vec<String> = std::fs::read_dir(work.path().join(PREPARED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| !is_leftover(name))
            .collect();
        assert_eq!(names, [key]);
    }

    #[tokio::test]
    async fn leftovers_go_at_start_and_only_the_most_recently_used_stay() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join(PREPARED_DIR);
        std::fs::create_dir_all(incoming_dir(&root, "1").join("half")).unwrap();
        std::fs::create_dir_all(outgoing_dir(&root, "2")).unwrap();
        let prepared = PreparedWorkspaces::open(work.path(), Duration::from_secs(1)).unwrap();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "what a stopped service left is removed");

        let workspace = work.path().join("workspace");
        std::fs::create_dir_all(workspace.join(".git")).unwrap();
        let stop = CancellationToken::new();
        let keys: Vec<String> = (0..MAX_PREPARED + 1).map(|i| format!("{i:064x}")).collect();
        for key in &keys {
            prepared.keep(key, &workspace, b"", &stop).await.unwrap();
            // Distinct times, so the order of use is the order of keeping.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!workspace_dir(&root, &keys[0]).exists(), "the least recently used is evicted");
        for key in &keys[1..] {
            assert!(workspace_dir(&root, key).exists());
        }
    }

    #[tokio::test]
    async fn a_stopped_copy_stops() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        std::fs::create_dir(&source).unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let grace = Duration::from_secs(1);
        assert_eq!(copy_tree(&source, &work.path().join("copy"), &stop, grace).await, Err(CopyError::Stopped));
        let missing =
            copy_tree(&work.path().join("none"), &work.path().join("x"), &CancellationToken::new(), grace).await;
        assert!(matches!(&missing, Err(CopyError::Failed(why)) if why.starts_with("cp: ")), "{missing:?}");
    }
}
