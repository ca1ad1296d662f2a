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

/// The value of `name` in the environment of the agent (Claude Code) running under `work_dir`,
/// once one runs (within a minute): what a task's agent was given, e.g. its model credential.
pub async fn running_agents_env_var(work_dir: &Path, name: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let prefix = format!("{name}=");
    loop {
        for (pid, cmdline) in processes_under(work_dir) {
            if !cmdline.contains("claude") {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ).into_owned();
            if let Some(value) = environ.split('\0').find_map(|var| var.strip_prefix(&prefix)) {
                return value.to_string();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no agent process showed up under {}", work_dir.display());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
