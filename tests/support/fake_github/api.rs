//! The REST API under `/api/v3`: the authenticated user, repositories, pull requests and issue
//! comments, with GitHub's authentication, pagination (`Link`) and error bodies
//! (`{"message", "documentation_url", "status"}`, 422s with `errors`).

use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
};
use serde_json::{json, Value};

use super::{
    basic_credentials, form_pairs, git, node_id, oauth, param, respond, timestamp, webhooks, Comment, Pull, Repo,
    Shared, World, APP_SLUG,
};

/// The API versions GitHub accepts in `X-GitHub-Api-Version`.
pub const SUPPORTED_API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];
/// The version GitHub uses when a request names none.
const DEFAULT_API_VERSION: &str = "2022-11-28";
/// The body GitHub answers a request without a `User-Agent` header with (403).
pub const USER_AGENT_REQUIRED: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n";

const ROOT_DOCS: &str = "https://docs.github.com/rest";
const CREATE_PULL_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const CREATE_COMMENT_DOCS: &str = "https://docs.github.com/rest/issues/comments#create-an-issue-comment";

/// Who a request is from: `None` when it carries no credentials.
type Caller = Option<String>;

/// Credentials that name no live token (GitHub: 401 "Bad credentials", whatever the path).
struct BadCredentials;

/// Answers one request under `/api/v3`.
pub(super) async fn serve(shared: &Shared, req: &Request<()>, body: &[u8]) -> Response {
    if !req.headers().contains_key(header::USER_AGENT) {
        return respond(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", USER_AGENT_REQUIRED);
    }
    let version = req.headers().get("x-github-api-version").and_then(|v| v.to_str().ok());
    if let Some(version) = version.filter(|v| !SUPPORTED_API_VERSIONS.contains(v)) {
        let message = format!("API version {version} is not supported.");
        return error(StatusCode::BAD_REQUEST, &message, "https://docs.github.com/rest/overview/api-versions");
    }
    let path = req.uri().path().strip_prefix("/api/v3").unwrap_or("/");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    if let (&Method::DELETE, ["applications", client_id, "token"]) = (method, segments.as_slice()) {
        return oauth::revoke(shared, req, client_id, body);
    }
    let Ok(caller) = authenticate(shared, req.headers()) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials", ROOT_DOCS);
    };
    let query = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    let mut response = match (method, segments.as_slice()) {
        (&Method::GET, ["user"]) => get_user(shared, caller),
        (&Method::GET, ["user", "repos"]) => list_repos(shared, req, &query, caller),
        (&Method::GET, ["repos", owner, name]) => get_repo(shared, caller, owner, name),
        (&Method::GET, ["repos", owner, name, "pulls"]) => list_pulls(shared, req, &query, caller, owner, name),
        (&Method::POST, ["repos", owner, name, "pulls"]) => create_pull(shared, caller, owner, name, body).await,
        (&Method::GET, ["repos", owner, name, "issues", number, "comments"]) => {
            list_comments(shared, req, &query, caller, owner, name, number)
        }
        (&Method::POST, ["repos", owner, name, "issues", number, "comments"]) => {
            create_comment(shared, caller, owner, name, number, body)
        }
        (&Method::GET, ["repos", owner, name, "collaborators", login, "permission"]) => {
            webhooks::permission(shared, caller, owner, name, login)
        }
        (&Method::GET, ["repos", owner, name, "check-suites", id, "check-runs"]) => {
            webhooks::check_runs(shared, caller, owner, name, id)
        }
        (&Method::POST, ["repos", owner, name, "issues" | "pulls", "comments", id, "reactions"]) => {
            webhooks::react(shared, caller, owner, name, id, body)
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found", ROOT_DOCS),
    };
    let version = HeaderValue::from_str(version.unwrap_or(DEFAULT_API_VERSION)).expect("a checked version");
    response.headers_mut().insert("x-github-api-version-selected", version);
    response
}

/// The user behind the request's token (`Bearer`, `token` or Basic with the token as password);
/// a token that is unknown, expired or revoked is bad.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, BadCredentials> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().unwrap_or("");
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") => {
            Some(token.trim().to_string())
        }
        _ => basic_credentials(headers).map(|(_, password)| password),
    };
    let login = token.and_then(|token| shared.state.lock().unwrap().token_user(&token));
    login.map(Some).ok_or(BadCredentials)
}

fn get_user(shared: &Shared, caller: Caller) -> Response {
    let Some(login) = caller else {
        return requires_authentication("https://docs.github.com/rest/users/users#get-the-authenticated-user");
    };
    let world = shared.state.lock().unwrap();
    let mut user = account_json(shared, &world, &login);
    user["name"] = json!(login);
    for (field, value) in [("company", Value::Null), ("blog", json!("")), ("location", Value::Null)] {
        user[field] = value;
    }
    for (field, value) in [("email", Value::Null), ("bio", Value::Null), ("twitter_username", Value::Null)] {
        user[field] = value;
    }
    user["created_at"] = json!("2020-01-01T00:00:00Z");
    user["updated_at"] = json!("2020-01-01T00:00:00Z");
    json_response(StatusCode::OK, user)
}

fn list_repos(shared: &Shared, req: &Request<()>, query: &[(String, String)], caller: Caller) -> Response {
    let Some(login) = caller else {
        return requires_authentication(
            "https://docs.github.com/rest/repos/repos#list-repositories-for-the-authenticated-user",
        );
    };
    let world = shared.state.lock().unwrap();
    // GitHub's default order is by full name; BTreeMap keys are the lowercased full names.
    let repos: Vec<Value> = world
        .repos
        .values()
        .filter(|repo| world.can_write(&login, repo))
        .map(|repo| repo_json(shared, &world, repo, Some(&login)))
        .collect();
    paginate(shared, req, query, repos)
}

fn get_repo(shared: &Shared, caller: Caller, owner: &str, name: &str) -> Response {
    let world = shared.state.lock().unwrap();
    match world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) {
        Some(repo) => json_response(StatusCode::OK, repo_json(shared, &world, repo, caller.as_deref())),
        None => error(StatusCode::NOT_FOUND, "Not Found", "https://docs.github.com/rest/repos/repos#get-a-repository"),
    }
}

fn list_pulls(
    shared: &Shared,
    req: &Request<()>,
    query: &[(String, String)],
    caller: Caller,
    owner: &str,
    name: &str,
) -> Response {
    let world = shared.state.lock().unwrap();
    let Some(repo) = world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) else {
        return error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "https://docs.github.com/rest/pulls/pulls#list-pull-requests",
        );
    };
    let state = param(query, "state").unwrap_or("open");
    // `head` filters only in GitHub's `owner:branch` form; a bare branch name filters nothing.
    let head = param(query, "head").and_then(|head| head.split_once(':'));
    let base = param(query, "base");
    let pulls: Vec<Value> = repo
        .pulls
        .iter()
        .rev()
        .filter(|pull| state == "all" || pull.state == state)
        .filter(|pull| head.is_none_or(|(user, branch)| user.eq_ignore_ascii_case(&repo.owner) && pull.head == branch))
        .filter(|pull| base.is_none_or(|base| pull.base == base))
        .map(|pull| pull_json(shared, &world, repo, pull))
        .collect();
    paginate(shared, req, query, pulls)
}

async fn create_pull(shared: &Shared, caller: Caller, owner: &str, name: &str, body: &[u8]) -> Response {
    let (path, repo_owner) = {
        let world = shared.state.lock().unwrap();
        let Some(repo) = world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) else {
            return error(StatusCode::NOT_FOUND, "Not Found", CREATE_PULL_DOCS);
        };
        let Some(login) = caller.as_deref() else { return requires_authentication(CREATE_PULL_DOCS) };
        if world.refuse_pull_creation || !world.can_write(login, repo) {
            return error(StatusCode::FORBIDDEN, "Resource not accessible by integration", CREATE_PULL_DOCS);
        }
        (repo.path.clone(), repo.owner.clone())
    };
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON", CREATE_PULL_DOCS);
    };
    let text = |field: &str| request.get(field).and_then(Value::as_str).map(str::to_string);
    for required in ["head", "base"] {
        if text(required).is_none() {
            let message = format!("Invalid request.\n\n\"{required}\" wasn't supplied.");
            return error(StatusCode::UNPROCESSABLE_ENTITY, &message, CREATE_PULL_DOCS);
        }
    }
    let (head_spec, base) = (text("head").unwrap_or_default(), text("base").unwrap_or_default());
    // `owner:branch` or `branch`; the fake has no forks, so another owner's branch does not exist.
    let head = match head_spec.split_once(':') {
        Some((user, branch)) if user.eq_ignore_ascii_case(&repo_owner) => Some(branch.to_string()),
        Some(_) => None,
        None => Some(head_spec.clone()),
    };
    let mut errors = Vec::new();
    let Some(title) = text("title").filter(|t| !t.trim().is_empty()) else {
        errors.push(json!({"resource": "PullRequest", "code": "missing_field", "field": "title"}));
        return validation_failed(errors, CREATE_PULL_DOCS);
    };
    let head_sha = match &head {
        Some(branch) => git::rev_parse(&path, &format!("refs/heads/{branch}")),
        None => None,
    };
    let base_sha = git::rev_parse(&path, &format!("refs/heads/{base}"));
    if base_sha.is_none() {
        errors.push(json!({"resource": "PullRequest", "field": "base", "code": "invalid"}));
    }
    if head_sha.is_none() {
        errors.push(json!({"resource": "PullRequest", "field": "head", "code": "invalid"}));
    }
    let (Some(head), Some(head_sha), Some(base_sha)) = (head, head_sha, base_sha) else {
        return validation_failed(errors, CREATE_PULL_DOCS);
    };
    if git::is_ancestor(&path, &head_sha, &base_sha) {
        let message = format!("No commits between {base} and {head_spec}");
        errors.push(json!({"resource": "PullRequest", "code": "custom", "message": message}));
        return validation_failed(errors, CREATE_PULL_DOCS);
    }

    let mut world = shared.state.lock().unwrap();
    let id = world.next_id() + 1_000_000;
    let login = caller.unwrap_or_default();
    let Some(repo) = world.repo_mut(owner, name) else {
        return error(StatusCode::NOT_FOUND, "Not Found", CREATE_PULL_DOCS);
    };
    if repo.pulls.iter().any(|pull| pull.state == "open" && pull.head == head) {
        let message = format!("A pull request already exists for {}:{head}.", repo.owner);
        errors.push(json!({"resource": "PullRequest", "code": "custom", "message": message}));
        return validation_failed(errors, CREATE_PULL_DOCS);
    }
    repo.last_number += 1;
    let pull = Pull {
        id,
        number: repo.last_number,
        title,
        body: text("body"),
        draft: request.get("draft").and_then(Value::as_bool).unwrap_or(false),
        state: "open".to_string(),
        head,
        head_sha,
        base,
        base_sha,
        user: login,
        created_at: timestamp(),
    };
    repo.pulls.push(pull.clone());
    let repo = world.repo(owner, name).expect("the repository just written to");
    let value = pull_json(shared, &world, repo, &pull);
    let mut response = json_response(StatusCode::CREATED, value);
    let location = format!("{}/repos/{}/{}/pulls/{}", shared.api_url, repo.owner, repo.name, pull.number);
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("a location"));
    response
}

fn list_comments(
    shared: &Shared,
    req: &Request<()>,
    query: &[(String, String)],
    caller: Caller,
    owner: &str,
    name: &str,
    number: &str,
) -> Response {
    const DOCS: &str = "https://docs.github.com/rest/issues/comments#list-issue-comments";
    let world = shared.state.lock().unwrap();
    let Some(repo) = world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", DOCS);
    };
    let Some(number) = number.parse::<u64>().ok().filter(|n| repo.pulls.iter().any(|p| p.number == *n)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", DOCS);
    };
    let comments = repo
        .comments
        .iter()
        .filter(|c| c.number == number)
        .map(|comment| comment_json(shared, &world, repo, comment))
        .collect();
    paginate(shared, req, query, comments)
}

fn create_comment(shared: &Shared, caller: Caller, owner: &str, name: &str, number: &str, body: &[u8]) -> Response {
    let mut world = shared.state.lock().unwrap();
    let Some(repo) = world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", CREATE_COMMENT_DOCS);
    };
    let Some(number) = number.parse::<u64>().ok().filter(|n| repo.pulls.iter().any(|p| p.number == *n)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", CREATE_COMMENT_DOCS);
    };
    let Some(login) = caller else { return requires_authentication(CREATE_COMMENT_DOCS) };
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON", CREATE_COMMENT_DOCS);
    };
    let Some(text) = request.get("body").and_then(Value::as_str) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"body\" wasn't supplied.",
            CREATE_COMMENT_DOCS,
        );
    };
    let comment = Comment {
        id: world.next_id() + 2_000_000,
        number,
        body: text.to_string(),
        user: login,
        created_at: timestamp(),
        via_app: true,
    };
    let repo = world.repo_mut(owner, name).expect("the repository found above");
    repo.comments.push(comment.clone());
    let repo = world.repo(owner, name).expect("the repository found above");
    json_response(StatusCode::CREATED, comment_json(shared, &world, repo, &comment))
}

/// One page of `items` (`per_page`, default 30, at most 100; `page` from 1), with GitHub's `Link`
/// header when there is more than one page: `<...&page=2>; rel="next", <...>; rel="last"`.
fn paginate(shared: &Shared, req: &Request<()>, query: &[(String, String)], items: Vec<Value>) -> Response {
    let per_page = param(query, "per_page").and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(30usize).min(100);
    let page = param(query, "page").and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(1usize);
    let last = items.len().div_ceil(per_page).max(1);
    let shown: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut response = json_response(StatusCode::OK, Value::Array(shown));
    if last == 1 {
        return response;
    }
    let link_to = |target: usize| {
        let mut pairs: Vec<(String, String)> = query.to_vec();
        match pairs.iter_mut().find(|(k, _)| k == "page") {
            Some(pair) => pair.1 = target.to_string(),
            None => pairs.push(("page".to_string(), target.to_string())),
        }
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        format!("<{}{}?{query}>", shared.url, req.uri().path())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    response.headers_mut().insert(header::LINK, HeaderValue::from_str(&links.join(", ")).expect("a link header"));
    response
}

/// A user or organisation as GitHub embeds one (`owner`, `user`).
pub(super) fn account_json(shared: &Shared, world: &World, login: &str) -> Value {
    let (login, id, kind) = match world.user(login) {
        Some(user) => (user.login.as_str(), user.id, "User"),
        // An owner that is no user is an organisation, with an ID derived from its name.
        None => (login, 900_000 + login.bytes().map(u64::from).sum::<u64>(), "Organization"),
    };
    let api = format!("{}/users/{login}", shared.api_url);
    json!({
        "login": login, "id": id, "node_id": node_id(kind, id),
        "avatar_url": format!("{}/avatars/u/{id}?", shared.url), "gravatar_id": "",
        "url": api, "html_url": format!("{}/{login}", shared.url),
        "repos_url": format!("{api}/repos"), "type": kind, "user_view_type": "public", "site_admin": false,
    })
}

fn repo_json(shared: &Shared, world: &World, repo: &Repo, viewer: Option<&str>) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{}/repos/{full_name}", shared.api_url);
    let mut value = json!({
        "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name, "full_name": full_name,
        "private": repo.private, "owner": account_json(shared, world, &repo.owner),
        "html_url": format!("{}/{full_name}", shared.url), "description": null, "fork": false, "url": api,
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "clone_url": format!("{}/{full_name}.git", shared.url),
        "git_url": format!("git://{}/{full_name}.git", shared.url.trim_start_matches("http://")),
        "ssh_url": format!("git@{}:{full_name}.git", shared.url.trim_start_matches("http://")),
        "default_branch": repo.default_branch, "visibility": if repo.private { "private" } else { "public" },
        "archived": false, "disabled": false, "has_issues": true,
        "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
    });
    if let Some(viewer) = viewer {
        let write = world.can_write(viewer, repo);
        let admin = repo.owner.eq_ignore_ascii_case(viewer);
        value["permissions"] = json!({"admin": admin, "maintain": admin, "push": write, "triage": write, "pull": true});
    }
    value
}

fn pull_json(shared: &Shared, world: &World, repo: &Repo, pull: &Pull) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{}/repos/{full_name}", shared.api_url);
    let html = format!("{}/{full_name}/pull/{}", shared.url, pull.number);
    let side = |branch: &str, sha: &str| {
        json!({
            "label": format!("{}:{branch}", repo.owner), "ref": branch, "sha": sha,
            "user": account_json(shared, world, &repo.owner), "repo": repo_json(shared, world, repo, None),
        })
    };
    json!({
        "url": format!("{api}/pulls/{}", pull.number), "id": pull.id, "node_id": node_id("PullRequest", pull.id),
        "html_url": html, "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"),
        "issue_url": format!("{api}/issues/{}", pull.number), "number": pull.number, "state": pull.state,
        "locked": false, "title": pull.title, "user": account_json(shared, world, &pull.user), "body": pull.body,
        "created_at": pull.created_at, "updated_at": pull.created_at, "closed_at": null, "merged_at": null,
        "merge_commit_sha": null, "draft": pull.draft,
        "comments_url": format!("{api}/issues/{}/comments", pull.number),
        "head": side(&pull.head, &pull.head_sha), "base": side(&pull.base, &pull.base_sha),
        "author_association": author_association(repo, &pull.user), "merged": false, "mergeable": null,
    })
}

pub(super) fn comment_json(shared: &Shared, world: &World, repo: &Repo, comment: &Comment) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{}/repos/{full_name}", shared.api_url);
    json!({
        "id": comment.id, "node_id": node_id("IssueComment", comment.id),
        "url": format!("{api}/issues/comments/{}", comment.id),
        "html_url": format!("{}/{full_name}/pull/{}#issuecomment-{}", shared.url, comment.number, comment.id),
        "issue_url": format!("{api}/issues/{}", comment.number), "body": comment.body,
        "user": account_json(shared, world, &comment.user),
        "created_at": comment.created_at, "updated_at": comment.created_at,
        "author_association": author_association(repo, &comment.user),
        "performed_via_github_app": if comment.via_app { json!({"slug": APP_SLUG, "name": "Autopilot"}) } else { Value::Null },
    })
}

fn author_association(repo: &Repo, login: &str) -> &'static str {
    if repo.owner.eq_ignore_ascii_case(login) {
        "OWNER"
    } else {
        "COLLABORATOR"
    }
}

pub(super) fn json_response(status: StatusCode, value: Value) -> Response {
    let mut response = respond(status, "application/json; charset=utf-8", value.to_string());
    response.headers_mut().insert("x-github-media-type", HeaderValue::from_static("github.v3; format=json"));
    response
}

/// GitHub's error body: `{"message", "documentation_url", "status"}` (the status as a string).
pub(super) fn error(status: StatusCode, message: &str, documentation_url: &str) -> Response {
    let body = json!({"message": message, "documentation_url": documentation_url, "status": status.as_str()});
    json_response(status, body)
}

fn validation_failed(errors: Vec<Value>, documentation_url: &str) -> Response {
    let body = json!({"message": "Validation Failed", "errors": errors, "documentation_url": documentation_url,
        "status": "422"});
    json_response(StatusCode::UNPROCESSABLE_ENTITY, body)
}

fn requires_authentication(documentation_url: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, "Requires authentication", documentation_url)
}

pub(super) fn no_content() -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
