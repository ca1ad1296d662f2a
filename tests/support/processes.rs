//! The processes a test can see in `/proc`: which ones run inside a directory (a task's
//! workspace), to check that nothing of a stopped or killed task survives.

use std::path::Path;

/// Pids and command lines of running processes whose working directory lies under `dir`.
pub fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
            cwd.starts_with(&dir).then_some((pid, cmdline))
        })
        .collect()
}
