//! The pull request's part of the git gateway bench: how long after a task's end its pull
//! request reaches GitHub and shows on the task, beside GitHub's own `POST /pulls` made directly.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use reqwest::Client;
use serde_json::json;

use crate::{git, median_ms, parse_time, World};

/// Runs `pr_tasks` tasks asking for a pull request on `repository_url` and prints the figures;
/// `work` and `direct_url` push the branches the direct calls open pull requests for.
pub async fn time_pull_requests(
    world: &World,
    session: &str,
    repository_url: &str,
    token: &str,
    pr_tasks: usize,
    work: &Path,
    direct_url: &str,
) {
    let mut to_github = Vec::new();
    let mut to_recorded = Vec::new();
    let mut seen_end_to_recorded = Vec::new();
    for i in 0..pr_tasks {
        let before = world.github.pulls("octo", "big").len();
        let start = json!({"repositoryUrl": repository_url, "prompt": format!("Notes {i}\nSCENARIO:write-file"),
            "delivery": {"push": true, "pullRequest": {"open": true}}});
        let (status, started) = world.call(reqwest::Method::POST, "/api/container/start", session, Some(start)).await;
        assert_eq!(status, 200, "{started}");
        let id = started["taskId"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(180);
        // The fake GitHub, watched in-process, for when the pull request reaches it; Status,
        // polled through the edge, for the task's end and its pull request recorded.
        let created = async {
            while world.github.pulls("octo", "big").len() == before {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            SystemTime::now()
        };
        let recorded = async {
            let mut seen_end = None;
            loop {
                assert!(Instant::now() < deadline, "task {id}'s pull request was not recorded:\n{}", world.edge.log());
                let status = world.status(session, &id).await;
                let state = status["task"]["state"].as_str().unwrap_or_default();
                assert!(!["TASK_STATE_FAILED", "TASK_STATE_CANCELLED"].contains(&state), "{status}");
                if state == "TASK_STATE_SUCCEEDED" && seen_end.is_none() {
                    seen_end = Some(Instant::now());
                }
                if !status["task"]["delivery"]["pullRequest"].is_null() {
                    let now = Instant::now();
                    return (status, now - seen_end.unwrap_or(now), SystemTime::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (created, (status, seen_end_to_seen_pull, recorded)) = tokio::join!(created, recorded);
        assert!(status["task"]["delivery"]["pullRequest"]["number"].as_u64().is_some(), "opened: {status}");
        let ended = status["task"]["endTime"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or_else(|| panic!("the task's endTime: {status}"));
        to_github.push(created.duration_since(ended).unwrap_or_default());
        to_recorded.push(recorded.duration_since(ended).unwrap_or_default());
        seen_end_to_recorded.push(seen_end_to_seen_pull);
    }
    // GitHub's own call, directly: a branch each (pushed untimed), then the POST.
    let api = Client::builder().no_proxy().build().unwrap();
    let mut direct_post = Vec::new();
    for i in 0..pr_tasks.max(5) {
        git(work, &["push", "-q", direct_url, &format!("HEAD:refs/heads/bench/pr-{i}")]).await;
        let started = Instant::now();
        let reply = api
            .post(format!("{}/repos/octo/big/pulls", world.github.api_url))
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", "autopilot-bench")
            .json(&json!({"title": format!("Bench {i}"), "head": format!("bench/pr-{i}"), "base": "main",
                "draft": true, "body": "A pull request opened directly."}))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body = reply.text().await.unwrap();
        direct_post.push(started.elapsed());
        assert_eq!(status, 201, "{body}");
    }
    println!(
        "pull request ({pr_tasks} tasks, medians): task end (its endTime) -> created at GitHub {:.0} ms, -> seen \
         recorded on the task {:.0} ms (Status polled every ~10 ms; from seeing SUCCEEDED to seeing the pull \
         request {:.0} ms); \
         GitHub's POST /repos/octo/big/pulls made directly {:.1} ms ({} calls)",
        median_ms(&mut to_github),
        median_ms(&mut to_recorded),
        median_ms(&mut seen_end_to_recorded),
        median_ms(&mut direct_post),
        direct_post.len(),
    );
}
