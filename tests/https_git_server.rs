//! The HTTPS git server the container tests clone from (`support/https_git_server.rs`), checked
//! with the real git client: it clones, fetches with a gzipped request and pushes over TLS when it
//! trusts the run's throwaway CA, and refuses the server when it does not.

use std::path::Path;

use autopilot_tests::{
    git_fixture::{git, GitFixture},
    https_git_server::{HttpsGitServer, LocalCa},
};
use tokio::process::Command;

/// Git with no configuration but the environment's, trusting only `ca_file` when given (and
/// otherwise the system's roots, which do not hold the run's CA).
fn git_https(cwd: &Path, ca_file: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .current_dir(cwd)
        .envs([("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_TERMINAL_PROMPT", "0")])
        .env_remove("GIT_SSL_NO_VERIFY")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH");
    if let Some(ca_file) = ca_file {
        cmd.env("GIT_SSL_CAINFO", ca_file);
    }
    cmd
}

#[tokio::test]
async fn git_clones_fetches_and_pushes_over_https_only_when_it_trusts_the_ca() {
    let repo = GitFixture::new();
    let ca = LocalCa::new();
    let server = HttpsGitServer::start(&ca, repo.bare_dir().parent().unwrap()).await;
    let url = server.url("repo");
    assert_eq!(url, format!("https://127.0.0.1:{}/repo.git", server.port()));

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let out = git_https(dir.path(), Some(&ca_file), &["clone", "-q", &url, "trusted"]).output().await.unwrap();
    assert!(out.status.success(), "clone with the CA: {}", String::from_utf8_lossy(&out.stderr));
    let clone = dir.path().join("trusted");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), repo.rev_parse("main"));

    // Git gzips a fetch request over 1 KiB; wanting 40 new commits makes one, which the backend
    // can only read if the server passed Content-Encoding on.
    let mut newest = String::new();
    for i in 0..40 {
        newest = git(&repo.bare_dir(), &["commit-tree", "-p", "main", "-m", &format!("commit {i}"), "main^{tree}"]);
        git(&repo.bare_dir(), &["branch", &format!("wanted-{i}"), &newest]);
    }
    let out = git_https(&clone, Some(&ca_file), &["fetch", "origin", "+refs/heads/*:refs/remotes/origin/*"])
        .env("GIT_TRACE_CURL", "1")
        .env("GIT_TRACE_CURL_NO_DATA", "1")
        .output()
        .await
        .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fetch with the CA: {trace}");
    assert!(trace.contains("Content-Encoding: gzip"), "the fetch request was not gzipped: {trace}");
    assert_eq!(git(&clone, &["rev-parse", "origin/wanted-39"]), newest);

    std::fs::write(clone.join("PUSHED.md"), "over https\n").unwrap();
    git(&clone, &["add", "."]);
    git(&clone, &["commit", "-qm", "pushed"]);
    let push = ["push", "-q", "origin", "HEAD:refs/heads/pushed"];
    let out = git_https(&clone, Some(&ca_file), &push).output().await.unwrap();
    assert!(out.status.success(), "push with the CA: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(repo.rev_parse("pushed"), git(&clone, &["rev-parse", "HEAD"]));

    let out = git_https(dir.path(), None, &["clone", "-q", &url, "untrusted"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "clone without the CA succeeded");
    assert!(stderr.to_lowercase().contains("certificate"), "clone without the CA failed otherwise: {stderr}");
    assert!(!dir.path().join("untrusted").exists());
}
