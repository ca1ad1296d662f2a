//! Pull requests through the edge: a conversation's one draft, its follow-up's comment, GitHub's
//! refusal on the task and the retry route (part of `people_sign_in_with_github...`, on its world).

use serde_json::json;

use crate::World;

/// A task asking for a pull request opens a draft against the default branch, described from
/// the task; its follow-up (setting no delivery of its own) pushes to the same branch and
/// comments on that pull request instead of opening another.
pub async fn a_conversation_opens_one_draft_pull_request_and_comments_on_it(world: &World, octo: &str) {
    let repository_url = format!("{}/octo/private-app", world.github.url);
    let before = world.github.pulls("octo", "private-app").len();
    let start = json!({"repositoryUrl": repository_url, "prompt": "Add the notes file\nSCENARIO:write-file",
        "delivery": {"push": true, "pullRequest": {"open": true}}});
    let (status, started) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 200, "{started}");
    let first = started["taskId"].as_str().unwrap().to_string();
    let ended = world.until_ended(octo, &first).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}");
    let status = world.until_pull_request(octo, &first).await;
    let shown = &status["task"]["delivery"]["pullRequest"];
    let pulls = world.github.pulls("octo", "private-app");
    assert_eq!(pulls.len(), before + 1, "one pull request opened");
    let pull = pulls.last().unwrap();
    assert_eq!((shown["number"].as_u64(), shown["draft"].as_bool()), (Some(pull.number), Some(true)), "{status}");
    assert_eq!(shown["url"], format!("{}/octo/private-app/pull/{}", world.github.url, pull.number));
    assert!(pull.draft, "a draft unless asked ready");
    assert_eq!((pull.head.as_str(), pull.base.as_str()), (format!("autopilot/{first}").as_str(), "main"));
    assert_eq!(pull.title, "Add the notes file", "the prompt's first line");
    let body = pull.body.clone().unwrap_or_default();
    assert!(body.contains("### Asked") && body.contains("> Add the notes file"), "{body}");
    assert!(body.contains("I wrote **AGENT_NOTES.md**."), "the agent's answer: {body}");
    assert!(body.contains("`AGENT_NOTES.md` +1 -0 (added)"), "files with their counts: {body}");
    assert!(body.contains(&format!("Autopilot-Task: {first}")), "{body}");
    let (_, list) = world.call(reqwest::Method::GET, "/api/tasks", octo).await;
    let listed = list["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == first.as_str()).unwrap();
    assert_eq!(&listed["pullRequest"], shown, "the list shows the same pull request");

    // The follow-up sets no delivery: it inherits push and pull request, pushes the same branch,
    // and comments.
    let head_before = world.github.rev_parse("octo", "private-app", &format!("refs/heads/autopilot/{first}"));
    let follow_up = json!({"parentTaskId": first, "prompt": "Extend the notes\nSCENARIO:read-and-extend"});
    let (status, started) = world.send_json("/api/container/start", octo, follow_up).await;
    assert_eq!(status, 200, "{started}");
    let second = started["taskId"].as_str().unwrap().to_string();
    let ended = world.until_ended(octo, &second).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}");
    assert_eq!(ended["task"]["delivery"]["branch"], format!("autopilot/{first}"), "its conversation's branch: {ended}");
    let status = world.until_pull_request(octo, &second).await;
    let adopted = &status["task"]["delivery"]["pullRequest"];
    assert_eq!((adopted["number"].as_u64(), adopted["adopted"].as_bool()), (Some(pull.number), Some(true)), "{status}");
    assert_eq!(world.github.pulls("octo", "private-app").len(), before + 1, "no second pull request");
    let head_after = world.github.rev_parse("octo", "private-app", &format!("refs/heads/autopilot/{first}"));
    assert!(head_after.is_some() && head_after != head_before, "the branch moved forward");
    let comments = world.github.comments("octo", "private-app", pull.number);
    assert_eq!(comments.len(), 1, "one comment");
    assert!(comments[0].body.starts_with("A follow-up pushed to this branch."), "{}", comments[0].body);
    assert!(comments[0].body.contains("> Extend the notes"), "{}", comments[0].body);
    for token in world.github.live_tokens() {
        assert!(!body.contains(&token) && !comments[0].body.contains(&token), "a GitHub token in a description");
    }
}

/// GitHub refusing the pull request leaves the task SUCCEEDED with GitHub's words; asking again
/// opens it. What cannot have one is refused in words.
pub async fn githubs_refusal_of_a_pull_request_is_shown_and_asked_again(world: &World, octo: &str) {
    let repository_url = format!("{}/octo/private-app", world.github.url);
    let no_push = json!({"repositoryUrl": repository_url, "prompt": "x", "delivery": {"pullRequest": {"open": true}}});
    let (status, refused) = world.send_json("/api/container/start", octo, no_push).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("needs delivery.push"), "{refused}");

    world.github.refuse_pull_creation(true);
    let start = json!({"repositoryUrl": repository_url, "prompt": "Refused\nSCENARIO:edit-and-create",
        "delivery": {"push": true, "pullRequest": {"open": true, "ready": true, "title": "Ready one"}}});
    let (status, started) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 200, "{started}");
    let task_id = started["taskId"].as_str().unwrap().to_string();
    let status = world.until_pull_request(octo, &task_id).await;
    assert_eq!(status["task"]["state"], "TASK_STATE_SUCCEEDED", "the task still succeeded: {status}");
    let error = status["task"]["delivery"]["pullRequest"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("Resource not accessible by integration"), "GitHub's words: {status}");
    world.github.refuse_pull_creation(false);
    let path = format!("/api/tasks/{task_id}/pull-request");
    let (status, pull) = world.call(reqwest::Method::POST, &path, octo).await;
    assert_eq!(status, 200, "{pull}");
    assert!(pull["number"].as_u64().unwrap() > 0 && pull["draft"].is_null(), "ready, as asked: {pull}");
    assert_eq!(world.github.pulls("octo", "private-app").last().unwrap().title, "Ready one");
    let (status, again) = world.call(reqwest::Method::POST, &path, octo).await;
    assert_eq!((status, &again), (200, &pull), "asking again answers the same pull request");
    let (_, shown) = world.call(reqwest::Method::GET, &format!("/api/container/status?taskId={task_id}"), octo).await;
    assert_eq!(shown["task"]["delivery"]["pullRequest"], pull, "{shown}");

    let (status, unknown) = world.call(reqwest::Method::POST, "/api/tasks/no-such-task/pull-request", octo).await;
    assert_eq!(status, 404, "{unknown}");
    let nothing = json!({"repositoryUrl": repository_url, "prompt": "SCENARIO:answer", "delivery": {"push": true}});
    let (_, started) = world.send_json("/api/container/start", octo, nothing).await;
    let unchanged = started["taskId"].as_str().unwrap().to_string();
    world.until_ended(octo, &unchanged).await;
    let (status, refused) =
        world.call(reqwest::Method::POST, &format!("/api/tasks/{unchanged}/pull-request"), octo).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("nothing to propose"), "{refused}");
}
