//! Runs one of the page's Chromium scripts (`web/tests/*.e2e.mjs`, playwright-core) against an
//! edge a test started, with the variables it reads, and fails the test with the script's report
//! and the edge's log when it fails. Awaited, never blocked on: a fake the page reaches (GitHub's
//! sign-in) may answer from the test's own runtime. Screenshots land in `tests/artifacts/`.

use crate::{edge::Edge, service::repo_root};

/// Runs `script` (under `web/`) with `vars`; answers its report (stdout and stderr).
pub async fn run_browser_script(script: &str, edge: &Edge, vars: &[(&str, &str)]) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium` (.ci/run does)"
    );
    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let output = tokio::process::Command::new("node")
        .args(["--test", script])
        .current_dir(repo_root().join("web"))
        .env("EDGE_URL", &edge.base_url)
        .env("CHROMIUM", chromium)
        .env("ARTIFACTS", &artifacts)
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("running node");
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed:\n{report}\n--- wrangler ---\n{}", edge.log());
    report
}
