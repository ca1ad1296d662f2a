//! The pull-request loop: the fake GitHub sends real signed webhook deliveries to the edge
//! (`POST /webhooks/github`), as GitHub does when someone comments on autopilot's pull request
//! (part of `people_sign_in_with_github...`, on its world, after its conversation opened one).

use std::time::{Duration, Instant};

use autopilot_tests::fake_github::{deliver, WEBHOOK_SECRET};
use serde_json::{json, Value};

use crate::World;

/// A mention by someone with write access starts a turn of the pull request's conversation:
/// it reacts, commits on the pull request's branch and comments there, and opens no second pull
/// request; a redelivery starts nothing, a wrong signature is 401, a mention by someone without
/// write access is answered and starts nothing, autopilot's own comments start nothing, and two
/// mentions in a row run one after the other.
pub async fn a_mention_on_the_pull_request_continues_its_conversation(world: &World, octo: &str) {
    let github = &world.github;
    let pull = github.pulls("octo", "private-app").last().cloned().expect("the conversation's pull request");
    let pulls_before = github.pulls("octo", "private-app").len();
    let hook = format!("{}/webhooks/github", world.edge.base_url);
    let branch = format!("refs/heads/{}", pull.head);
    let head_before = github.rev_parse("octo", "private-app", &branch);

    let comment = github.comment_as(
        "octo",
        "octo",
        "private-app",
        pull.number,
        "@autopilot add a line\nSCENARIO:read-and-extend",
    );
    let event = github.issue_comment_event("octo", "private-app", pull.number, &comment);
    let (status, _) = deliver(&hook, "not the secret", "issue_comment", "d-forged", &event).await;
    assert_eq!(status, 401, "a delivery not signed with the App's secret");
    let (status, answer) = deliver(&hook, WEBHOOK_SECRET, "issue_comment", "d-1", &event).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let turn =
        answer["started"]["taskId"].as_str().unwrap_or_else(|| panic!("{answer}\n{}", world.edge.log())).to_string();
    let (status, again) = deliver(&hook, WEBHOOK_SECRET, "issue_comment", "d-1", &event).await;
    assert!(status == 200 && again.contains("already acted on"), "a redelivery starts nothing: {again}");
    let ended = world.until_ended(octo, &turn).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}");
    assert_eq!(ended["task"]["delivery"]["branch"], pull.head, "the pull request's branch: {ended}");
    let reacted = github.reactions("octo", "private-app");
    assert!(reacted.contains(&(comment["id"].as_u64().unwrap(), "eyes".into(), "octo".into())), "{reacted:?}");
    let status = world.until_pull_request(octo, &turn).await;
    assert_eq!(status["task"]["delivery"]["pullRequest"]["number"].as_u64(), Some(pull.number), "{status}");
    assert_eq!(github.pulls("octo", "private-app").len(), pulls_before, "no second pull request");
    assert_ne!(github.rev_parse("octo", "private-app", &branch), head_before, "the branch moved forward");
    let replies = github.comments("octo", "private-app", pull.number);
    assert!(replies.last().unwrap().body.starts_with("A follow-up pushed to this branch."), "{replies:?}");

    // Someone without write access is told so, and nothing starts.
    github.add_user("mallory", 4040);
    let (status, answer) =
        comment_and_deliver(world, "mallory", pull.number, "@autopilot delete everything", "d-2").await;
    assert!(status == 200 && answer.contains("refused"), "{answer}");
    let last = github.comments("octo", "private-app", pull.number).last().unwrap().body.clone();
    assert!(last.starts_with("@mallory only people with write access to octo/private-app"), "{last}");

    // Autopilot's own comment (made as the user, through the App) starts nothing; nor does an
    // event autopilot does not act on.
    let mut own = github.comment_as("octo", "octo", "private-app", pull.number, "Done; ask @autopilot for more.");
    own["performed_via_github_app"] = json!({"slug": "autopilot"});
    let event = github.issue_comment_event("octo", "private-app", pull.number, &own);
    let (status, answer) = deliver(&hook, WEBHOOK_SECRET, "issue_comment", "d-3", &event).await;
    assert!(status == 202 && answer.contains("autopilot's own comment"), "{answer}");
    let (status, _) = deliver(&hook, WEBHOOK_SECRET, "push", "d-4", &json!({"ref": "refs/heads/main"})).await;
    assert_eq!(status, 202);

    // What is not a delivery autopilot can act on is refused or acknowledged, and starts nothing.
    let huge = json!({"action": "created", "padding": "x".repeat(1 << 20)});
    let (status, _) = deliver(&hook, WEBHOOK_SECRET, "issue_comment", "d-8", &huge).await;
    assert_eq!(status, 413, "over 1 MiB");
    let (status, answer) = deliver(
        &hook,
        WEBHOOK_SECRET,
        "issue_comment",
        "d-9",
        &json!({"action": "created", "issue": {"pull_request": {}}, "comment": {"body": "@autopilot"}}),
    )
    .await;
    assert_eq!(status, 400, "not GitHub's shape: {answer}");
    let nobodys = github.issue_comment_event("octo", "private-app", 999, &comment);
    let (status, answer) = deliver(&hook, WEBHOOK_SECRET, "issue_comment", "d-10", &nobodys).await;
    assert!(status == 202 && answer.contains("not a pull request autopilot opened"), "{answer}");

    // Two mentions in a row: the second waits for the first's turn, then continues it.
    let (_, first) =
        comment_and_deliver(world, "octo", pull.number, "@autopilot take your time\nSCENARIO:slow-tools:6", "d-5")
            .await;
    let (_, second) =
        comment_and_deliver(world, "octo", pull.number, "@autopilot and then this\nSCENARIO:read-and-extend", "d-6")
            .await;
    let first: Value = serde_json::from_str(&first).unwrap();
    let first = first["started"]["taskId"].as_str().unwrap_or_else(|| panic!("{first}")).to_string();
    assert!(second.contains("queued"), "the second waits: {second}");
    world.until_ended(octo, &first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = loop {
        let (_, list) = world.call(reqwest::Method::GET, "/api/tasks", octo).await;
        let newest = list["tasks"][0].clone();
        if newest["parentTaskId"] == first.as_str() {
            break newest["taskId"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the queued mention never started: {list}\n{}", world.edge.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ended = world.until_ended(octo, &next).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}");
    assert_eq!(ended["task"]["delivery"]["branch"], pull.head, "{ended}");
    assert_eq!(github.pulls("octo", "private-app").len(), pulls_before, "still one pull request");

    // A turn that fails says why on the pull request (last: a failed turn ends the conversation
    // the fake model API plays).
    let (_, answer) =
        comment_and_deliver(world, "octo", pull.number, "@autopilot try\nSCENARIO:api-error", "d-7").await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let failed = answer["started"]["taskId"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
    assert_eq!(world.until_ended(octo, &failed).await["task"]["state"], "TASK_STATE_FAILED");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !github
        .comments("octo", "private-app", pull.number)
        .last()
        .unwrap()
        .body
        .starts_with("The turn you asked for failed: ")
    {
        assert!(
            Instant::now() < deadline,
            "no word of the failure: {:?}",
            github.comments("octo", "private-app", pull.number)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `autoFix`, a check suite that fails on the pull request starts a turn named after the
/// failing checks; after three in a row, a comment says autopilot stopped, and nothing starts.
pub async fn failing_checks_are_fixed_at_most_three_times_in_a_row(world: &World, octo: &str) {
    let github = &world.github;
    let start = json!({"repositoryUrl": format!("{}/octo/private-app", github.url), "prompt": "Start the notes\nSCENARIO:write-file",
        "delivery": {"push": true, "pullRequest": {"open": true, "autoFix": true}}});
    let (status, started) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 200, "{started}");
    let first = started["taskId"].as_str().unwrap().to_string();
    world.until_ended(octo, &first).await;
    let opened = world.until_pull_request(octo, &first).await;
    let number = opened["task"]["delivery"]["pullRequest"]["number"].as_u64().unwrap_or_else(|| panic!("{opened}"));
    let hook = format!("{}/webhooks/github", world.edge.base_url);
    for round in 1..=3 {
        let suite =
            github.failed_check_suite("octo", "private-app", number, "test", "2 tests failed: notes_are_complete");
        let (status, answer) = deliver(&hook, WEBHOOK_SECRET, "check_suite", &format!("c-{round}"), &suite).await;
        let answer: Value = serde_json::from_str(&answer).unwrap_or_default();
        let turn = answer["pullRequests"][0]["started"]["taskId"].as_str();
        let turn = turn.unwrap_or_else(|| panic!("round {round}: {status} {answer}\n{}", world.edge.log())).to_string();
        let ended = world.until_ended(octo, &turn).await;
        assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}");
        let (_, list) = world.call(reqwest::Method::GET, "/api/tasks", octo).await;
        let listed = list["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == turn.as_str()).cloned().unwrap();
        assert!(listed["title"].as_str().unwrap().starts_with("The checks on this pull request's head ("), "{listed}");
    }
    let suite = github.failed_check_suite("octo", "private-app", number, "test", "still failing");
    let (_, answer) = deliver(&hook, WEBHOOK_SECRET, "check_suite", "c-4", &suite).await;
    assert!(answer.contains("3 turns in a row fixed checks already"), "the fourth starts nothing: {answer}");
    let last = github.comments("octo", "private-app", number).last().map(|c| c.body.clone()).unwrap_or_default();
    assert!(last.starts_with("Autopilot stopped fixing the failing checks after 3 turns in a row."), "{last}");
}

/// `login` comments `body` on the pull request `number`, and GitHub delivers it (`delivery`):
/// the edge's answer.
async fn comment_and_deliver(world: &World, login: &str, number: u64, body: &str, delivery: &str) -> (u16, String) {
    let comment = world.github.comment_as(login, "octo", "private-app", number, body);
    let event = world.github.issue_comment_event("octo", "private-app", number, &comment);
    let hook = format!("{}/webhooks/github", world.edge.base_url);
    deliver(&hook, WEBHOOK_SECRET, "issue_comment", delivery, &event).await
}
