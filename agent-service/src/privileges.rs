//! Root for environments' setup scripts, and for nothing else. A real setup installs system
//! packages (`apk add`), which needs root; the agent must never have it. So in the container the
//! service starts as root and, before anything else runs, becomes the unprivileged user named by
//! `AUTOPILOT_AGENT_USER` for real and effectively, keeping root only as its *saved* user id
//! ([`drop_keeping_root`]). Then:
//! - everything it runs (git, cp, tar, the agent under its guard, the agent's tools) is an
//!   `exec`, which sets the saved id to the effective one: those processes are the user through
//!   and through and cannot get root back;
//! - a setup script alone is started as root ([`run_as_root`]: the child takes back the saved
//!   id between fork and exec), and its workspace and home are handed back to the user after it
//!   ([`give_back`]);
//! - the service signals those root processes (a stop, a cancel) as root, on the calling thread
//!   only and for that one call ([`signal`]);
//! - the service itself, its saved id being root, is not the agent's to trace: the kernel keeps
//!   a process whose ids differ from the caller's out of its `/proc` (memory, environment) and out
//!   of `ptrace`, so the agent cannot read the service's secrets.
//!
//! Started as anyone else (`make dev`, tunnel mode on a laptop), nothing changes: everything runs
//! as that user, and a setup script that needs root fails as it would in a terminal.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        OnceLock,
    },
};

use nix::{
    libc,
    sys::signal::Signal,
    unistd::{Gid, Pid, Uid, User},
};

/// Whether the service kept root as its saved id (it started as root with a user to run as).
static ROOT_KEPT: AtomicBool = AtomicBool::new(false);
/// The user's ids and home, once dropped to.
static USER_UID: AtomicU32 = AtomicU32::new(0);
static USER_GID: AtomicU32 = AtomicU32::new(0);
static USER_HOME: OnceLock<PathBuf> = OnceLock::new();

/// The user the service became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Becomes `user` (by name) for real and effectively, root kept as the saved id, with the user's
/// group alone; sets HOME, USER and LOGNAME to the user's. Answers `None`, changing nothing, when
/// the process does not run as root. Call it before any other thread starts.
///
/// # Errors
/// The user is unknown, or a change of ids was refused.
pub fn drop_keeping_root(user: &str) -> io::Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let found = User::from_name(user)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user named {user} on this machine")))?;
    let (uid, gid) = (found.uid.as_raw(), found.gid.as_raw());
    if uid == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{user} is root; name an unprivileged user")));
    }
    nix::unistd::setgroups(&[found.gid]).map_err(io::Error::from)?;
    nix::unistd::setresgid(found.gid, found.gid, Gid::from_raw(0)).map_err(io::Error::from)?;
    nix::unistd::setresuid(found.uid, found.uid, Uid::from_raw(0)).map_err(io::Error::from)?;
    USER_UID.store(uid, Ordering::SeqCst);
    USER_GID.store(gid, Ordering::SeqCst);
    let _ = USER_HOME.set(found.dir.clone());
    ROOT_KEPT.store(true, Ordering::SeqCst);
    // SAFETY: called before any other thread exists (see above), so nothing reads the
    // environment while it changes.
    unsafe {
        std::env::set_var("HOME", &found.dir);
        std::env::set_var("USER", &found.name);
        std::env::set_var("LOGNAME", &found.name);
    }
    Ok(Some(RunAs { name: found.name, uid, gid, home: found.dir }))
}

/// Whether setup scripts run as root here.
pub fn root_kept() -> bool {
    ROOT_KEPT.load(Ordering::SeqCst)
}

/// Makes `command`'s process root (ids and groups) between fork and exec, if root was kept;
/// otherwise leaves it as it is.
pub fn run_as_root(command: &mut tokio::process::Command) {
    if !root_kept() {
        return;
    }
    // SAFETY: between fork and exec only async-signal-safe calls are made (raw id changes).
    unsafe {
        command.pre_exec(|| {
            // The user id first: becoming root again brings back the capabilities the group
            // changes need.
            let groups = [0 as libc::gid_t];
            if libc::setresuid(0, 0, 0) != 0
                || libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setresgid(0, 0, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to the process `pid` (a group when `group`), as root on this thread alone if
/// root was kept (the target may be a setup script running as root), then back.
pub fn signal(pid: Pid, signal: Signal, group: bool) -> nix::Result<()> {
    let send = || match group {
        true => nix::sys::signal::killpg(pid, signal),
        false => nix::sys::signal::kill(pid, signal),
    };
    if !root_kept() {
        return send();
    }
    let uid = USER_UID.load(Ordering::SeqCst);
    // The raw system call changes the calling thread's ids only (libc's wrapper would change
    // every thread's); nothing between the two changes can yield this thread to other work.
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        if libc::syscall(libc::SYS_setresuid, -1i32, 0u32, -1i32) != 0 {
            return Err(nix::Error::last());
        }
        let sent = send();
        if libc::syscall(libc::SYS_setresuid, -1i32, uid, -1i32) != 0 {
            // Should never happen (the saved id allows it); a thread left as root must not go on.
            std::process::abort();
        }
        sent
    }
}

/// Hands `workspace` and the user's home back to the user after a setup script ran as root:
/// everything below them becomes the user's (links themselves, never what they point to). A
/// no-op unless root was kept.
///
/// # Errors
/// `chown` failed; its words.
pub async fn give_back(workspace: &Path) -> Result<(), String> {
    if !root_kept() {
        return Ok(());
    }
    let paths: Vec<&Path> = [Some(workspace), USER_HOME.get().map(PathBuf::as_path)].into_iter().flatten().collect();
    let owner = format!("{}:{}", USER_UID.load(Ordering::SeqCst), USER_GID.load(Ordering::SeqCst));
    let mut chown = tokio::process::Command::new("chown");
    chown.arg("-R").arg("-h").arg(&owner).arg("--").args(paths).env_clear().env("PATH", "/usr/bin:/bin");
    chown.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    run_as_root(&mut chown);
    let output = chown.output().await.map_err(|e| format!("could not run chown: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!("chown: {}", String::from_utf8_lossy(&output.stderr).trim())),
    }
}
