//! Every check a request must pass before the service acts on it, in one place, whichever
//! transport it came by (gRPC and gRPC-web in [`crate::grpc_api`], frames through it in
//! [`crate::frame_server`]): a `StartRequest` becomes a [`StartSpec`] the task machinery can
//! trust (its types live in [`crate::spec`]), a task id and a cancel reason are checked, or the
//! error says which field is wrong and why. Pure: no I/O, so every rule is unit-tested here.
//!
//! Limits (documented in the contract and README):
//! - prompt: 1..=100_000 bytes;
//! - model: at most 128 characters from `A-Z a-z 0-9 . _ - : / @ [ ]`;
//! - git_ref: at most 256 bytes, a name `git check-ref-format` would accept, or a commit id;
//! - max_turns: 0 (no limit) or 1..=1000; max_budget_usd: finite, 0 (no limit) or up to 1000;
//! - timeout: unset (service default) or 1 s up to the service's maximum;
//! - delivery.branch: empty (default `autopilot/<task id>`) or a name [`crate::branch_name`]
//!   accepts; delivery.author_name: at most 128 bytes, no control characters, `<` or `>`;
//!   delivery.author_email: at most 254 bytes, no whitespace, control characters, `<` or `>`;
//!   delivery.pull_request: only with push; its base empty or a branch name as above, its title
//!   at most 256 bytes without control characters.
//! - task_id (Status, StreamEvents, Cancel, GetDiff): empty (the running or most recent task) or
//!   at most 64 characters from `A-Z a-z 0-9 -` (task ids are UUIDs: [`crate::task_id`]);
//! - parent_task_id (a follow-up): empty, or a task id as above; then repository_url may be
//!   empty (the parent's); restore only with a parent_task_id equal to its task_id, and held to
//!   [`crate::workspace_snapshot::check`] (16 MiB at most, ids and commits well formed);
//! - cancel reason: at most 500 bytes once trimmed (empty: none given);
//! - ListTasks page_size: 0 (20) or 1..=100; page_token: empty (from the newest task) or a token
//!   this service handed out ([`crate::task_list::Position::token`]), at most 256 characters.
//! - environment (unset: none): name 1..=64 characters from `A-Z a-z 0-9 . _ -`; setup_script
//!   and maintenance_script at most 64 KiB each, without NUL; at most 100 variables and 100
//!   secrets, named `[A-Za-z_][A-Za-z0-9_]*` (at most 256 bytes), no name both a variable and a
//!   secret, and none that shadows what the service relies on
//!   ([`crate::environment_vars::shadows_the_service`]: PATH, HOME, SHELL, TMPDIR,
//!   CLAUDE_CONFIG_DIR, SSH_AUTH_SOCK, IS_SANDBOX, and names starting with ANTHROPIC_,
//!   AUTOPILOT_, GIT_, CLAUDE_CODE_ or LD_); values without NUL, at most 32 KiB each, all
//!   names and values together at most 1 MiB (a process's environment must fit the kernel's
//!   limit); a secret empty or at least 6 bytes long (shorter ones cannot be masked:
//!   [`crate::redact::MIN_SECRET_LEN`]); setup_timeout unset (10 minutes) or 1 s ..= 1 h.
//!   Errors name the entry, e.g. `environment.variables["PATH"]`, and never quote a secret.

use std::{collections::BTreeMap, time::Duration};

use autopilot_contract::{
    environment_rules,
    task_list::page_size,
    v1::{DeliveryOptions, Environment, ListTasksRequest, PullRequestOptions, StartRequest},
};

use crate::{
    branch_name::check_branch_name,
    model_access,
    repo_url::{parse_repo_url, without_credentials},
    spec::{DeliverySpec, EnvironmentSpec, Origin, ParentRequest, Restore, RunSpec, StartSpec},
    task_id::is_task_id,
    task_list::{PageRequest, Position},
    workspace_snapshot,
};

pub const MAX_PROMPT_BYTES: usize = 100_000;
pub const MAX_MODEL_LEN: usize = 128;
pub const MAX_REF_LEN: usize = 256;
pub const MAX_TURNS: i32 = 1000;
pub const MAX_BUDGET_USD: f64 = 1000.0;
pub const MAX_AUTHOR_NAME_LEN: usize = 128;
pub const MAX_AUTHOR_EMAIL_LEN: usize = 254;
/// Longest pull request title, in bytes.
pub const MAX_PULL_REQUEST_TITLE_LEN: usize = 256;
/// Longest cancel reason accepted.
pub const MAX_CANCEL_REASON_LEN: usize = 500;
pub use autopilot_contract::task_list::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
/// Longest page token accepted (the service's own are under 100 characters).
pub const MAX_PAGE_TOKEN_LEN: usize = 256;
/// The commit author when the request names none.
pub const DEFAULT_AUTHOR_NAME: &str = "Autopilot";
/// The commit author's email when the request names none.
pub const DEFAULT_AUTHOR_EMAIL: &str = "autopilot@localhost";
pub use autopilot_contract::environment_rules::{
    DEFAULT_SETUP_TIMEOUT, MAX_ENTRIES as MAX_ENVIRONMENT_ENTRIES, MAX_NAME_LEN as MAX_ENVIRONMENT_NAME_LEN,
    MAX_SCRIPT_BYTES, MAX_TOTAL_BYTES as MAX_ENVIRONMENT_BYTES, MAX_VARIABLE_NAME_LEN, MAX_VARIABLE_VALUE_BYTES,
    SETUP_TIMEOUT_RANGE,
};

/// What the operator configured that validation depends on.
#[derive(Debug, Clone)]
pub struct Limits {
    pub allow_local_repos: bool,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
}

/// A rejected field: `field` is its path in the request (with the key of a map's entry, e.g.
/// `environment.variables["PATH"]`), `message` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

fn reject(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// Checks every field of `request`.
///
/// # Errors
/// The first field that breaks a rule.
pub fn validate_start(request: &StartRequest, limits: &Limits) -> Result<StartSpec, FieldError> {
    let repository = |url: &str| parse_repo_url(url, limits.allow_local_repos).map_err(|m| reject("repository_url", m));
    let git_ref = request.git_ref.clone();
    let origin = match validate_parent(request, limits)? {
        None => Origin::Repository { repo: repository(&request.repository_url)?, git_ref },
        Some((task_id, restore)) => {
            let repo = match request.repository_url.as_str() {
                "" => None,
                url => Some(repository(url)?),
            };
            Origin::Parent(ParentRequest { task_id, repo, git_ref, restore })
        }
    };
    validate_ref(&request.git_ref)?;
    validate_prompt(&request.prompt)?;
    let options = request.options.clone().unwrap_or_default();
    validate_model(&options.model)?;
    if !(0..=MAX_TURNS).contains(&options.max_turns) {
        return Err(reject(
            "options.max_turns",
            format!("must be between 0 (no limit) and {MAX_TURNS}; got {}", options.max_turns),
        ));
    }
    let budget = options.max_budget_usd;
    if !budget.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&budget) {
        return Err(reject(
            "options.max_budget_usd",
            format!("must be between 0 (no limit) and {MAX_BUDGET_USD}; got {budget}"),
        ));
    }
    let timeout = match options.timeout {
        None => limits.default_timeout,
        Some(d) => {
            if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
                return Err(reject("options.timeout", "must be positive"));
            }
            let timeout = Duration::new(d.seconds as u64, d.nanos.clamp(0, 999_999_999) as u32);
            if timeout < Duration::from_secs(1) {
                return Err(reject("options.timeout", "must be at least 1s"));
            }
            if timeout > limits.max_timeout {
                return Err(reject(
                    "options.timeout",
                    format!("must be at most {}s on this service", limits.max_timeout.as_secs()),
                ));
            }
            timeout
        }
    };
    let delivery = validate_delivery(request.delivery.clone().unwrap_or_default())?;
    if let Some(access) = &request.model_access {
        model_access::check(access).map_err(|(field, why)| reject(field, why))?;
    }
    let environment = request.environment.as_ref().map(validate_environment).transpose()?;
    let run = RunSpec {
        prompt: request.prompt.clone(),
        model: options.model,
        max_turns: options.max_turns as u32,
        max_budget_usd: budget,
        timeout,
        delivery,
        model_access: request.model_access.clone(),
        environment,
    };
    Ok(StartSpec { origin, run })
}

/// The parent a follow-up names, and the restore it brings, checked.
fn validate_parent(request: &StartRequest, limits: &Limits) -> Result<Option<(String, Option<Restore>)>, FieldError> {
    let parent_id = request.parent_task_id.as_str();
    if parent_id.is_empty() {
        return match request.restore {
            Some(_) => Err(reject("restore", "is only for a follow-up: set parent_task_id to its task_id")),
            None => Ok(None),
        };
    }
    if !is_task_id(parent_id) {
        return Err(reject("parent_task_id", "is not a task id (task ids are UUIDs)"));
    }
    let restore = match &request.restore {
        None => None,
        Some(snapshot) => {
            if snapshot.task_id != parent_id {
                return Err(reject("restore.task_id", "must equal parent_task_id"));
            }
            workspace_snapshot::check(snapshot).map_err(|(field, why)| reject(field, why))?;
            let repo = parse_repo_url(&without_credentials(&snapshot.repository_url), limits.allow_local_repos)
                .map_err(|m| reject("restore.repository_url", m))?;
            Some(Restore { snapshot: Box::new(snapshot.clone()), repo })
        }
    };
    Ok(Some((parent_id.to_string(), restore)))
}

/// Checks the form of a request's task id; empty names the running or most recent task.
///
/// # Errors
/// `task_id` cannot be a task id.
pub fn validate_task_id(task_id: &str) -> Result<(), FieldError> {
    if !task_id.is_empty() && !is_task_id(task_id) {
        return Err(reject("task_id", "is not a task id (task ids are UUIDs)"));
    }
    Ok(())
}

/// A cancel request's reason, trimmed; `None` when none was given.
///
/// # Errors
/// The reason is longer than [`MAX_CANCEL_REASON_LEN`] bytes.
pub fn validate_cancel_reason(reason: &str) -> Result<Option<String>, FieldError> {
    let reason = reason.trim();
    if reason.len() > MAX_CANCEL_REASON_LEN {
        return Err(reject("reason", format!("is longer than {MAX_CANCEL_REASON_LEN} bytes")));
    }
    Ok((!reason.is_empty()).then(|| reason.to_string()))
}

/// The page a ListTasks request asks for.
///
/// # Errors
/// `page_size` is out of range, or `page_token` is not one this service handed out.
pub fn validate_list_tasks(request: &ListTasksRequest) -> Result<PageRequest, FieldError> {
    let size = page_size(request.page_size).map_err(|why| reject("page_size", why))?;
    let after = match request.page_token.as_str() {
        "" => None,
        token => {
            let position = Some(token)
                .filter(|token| token.len() <= MAX_PAGE_TOKEN_LEN)
                .and_then(Position::from_token)
                .filter(|p| is_task_id(p.task_id()))
                .ok_or_else(|| reject("page_token", "is not one this service handed out"))?;
            Some(position)
        }
    };
    Ok(PageRequest { size, after })
}

fn validate_delivery(delivery: DeliveryOptions) -> Result<DeliverySpec, FieldError> {
    if !delivery.branch.is_empty() {
        check_branch_name(&delivery.branch).map_err(|why| {
            reject("delivery.branch", format!("{:?} is not a usable branch name: it {why}", delivery.branch))
        })?;
    }
    let name = delivery.author_name.trim();
    if name.len() > MAX_AUTHOR_NAME_LEN {
        return Err(reject("delivery.author_name", format!("is longer than {MAX_AUTHOR_NAME_LEN} bytes")));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '<' || *c == '>') {
        return Err(reject("delivery.author_name", format!("contains {c:?}, which a commit author cannot have")));
    }
    if !name.is_empty() && !name.chars().any(char::is_alphanumeric) {
        return Err(reject("delivery.author_name", "needs at least one letter or digit"));
    }
    let email = delivery.author_email.trim();
    if email.len() > MAX_AUTHOR_EMAIL_LEN {
        return Err(reject("delivery.author_email", format!("is longer than {MAX_AUTHOR_EMAIL_LEN} bytes")));
    }
    if let Some(c) = email.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '<' || *c == '>') {
        return Err(reject("delivery.author_email", format!("contains {c:?}, which a commit email cannot have")));
    }
    let pull_request = delivery.pull_request.filter(|pull| pull.open);
    if let Some(pull) = &pull_request {
        validate_pull_request(pull, delivery.push)?;
    }
    let or_default =
        |value: &str, default: &str| if value.is_empty() { default.to_string() } else { value.to_string() };
    Ok(DeliverySpec {
        branch: delivery.branch,
        push: delivery.push,
        author_name: or_default(name, DEFAULT_AUTHOR_NAME),
        author_email: or_default(email, DEFAULT_AUTHOR_EMAIL),
        pull_request,
    })
}

fn validate_pull_request(pull: &PullRequestOptions, push: bool) -> Result<(), FieldError> {
    if !push {
        return Err(reject("delivery.pull_request", "needs delivery.push: a pull request proposes a pushed branch"));
    }
    if !pull.base.is_empty() {
        check_branch_name(&pull.base).map_err(|why| {
            reject("delivery.pull_request.base", format!("{:?} is not a usable branch name: it {why}", pull.base))
        })?;
    }
    if pull.title.len() > MAX_PULL_REQUEST_TITLE_LEN {
        return Err(reject(
            "delivery.pull_request.title",
            format!("is longer than {MAX_PULL_REQUEST_TITLE_LEN} bytes"),
        ));
    }
    if let Some(c) = pull.title.chars().find(|c| c.is_control()) {
        return Err(reject("delivery.pull_request.title", format!("contains {c:?}, which a title cannot have")));
    }
    Ok(())
}

fn validate_environment(environment: &Environment) -> Result<EnvironmentSpec, FieldError> {
    let setup_timeout =
        environment_rules::check(environment).map_err(|refused| reject(refused.field, refused.message))?;
    let sorted = |entries: &std::collections::HashMap<String, String>| -> BTreeMap<String, String> {
        entries.iter().map(|(name, value)| (name.clone(), value.clone())).collect()
    };
    Ok(EnvironmentSpec {
        name: environment.name.clone(),
        setup_script: environment.setup_script.clone(),
        maintenance_script: environment.maintenance_script.clone(),
        variables: sorted(&environment.variables),
        secrets: sorted(&environment.secrets),
        setup_timeout,
        revision: environment.revision,
        prepared_store: environment.prepared_store.clone(),
    })
}

fn validate_prompt(prompt: &str) -> Result<(), FieldError> {
    if prompt.trim().is_empty() {
        return Err(reject("prompt", "is required"));
    }
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(reject(
            "prompt",
            format!("is {} bytes long; at most {MAX_PROMPT_BYTES} are allowed", prompt.len()),
        ));
    }
    if prompt.contains('\0') {
        return Err(reject("prompt", "must not contain NUL characters"));
    }
    Ok(())
}

fn validate_model(model: &str) -> Result<(), FieldError> {
    if model.len() > MAX_MODEL_LEN {
        return Err(reject("options.model", format!("is longer than {MAX_MODEL_LEN} characters")));
    }
    if let Some(bad) = model.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-:/@[]".contains(*c))) {
        return Err(reject("options.model", format!("contains {bad:?}, which no model name has")));
    }
    if model.starts_with('-') {
        return Err(reject("options.model", "must not start with '-'"));
    }
    Ok(())
}

/// Branch, tag or commit names as `git check-ref-format` would take them, minus the exotic.
fn validate_ref(git_ref: &str) -> Result<(), FieldError> {
    if git_ref.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| Err(reject("git_ref", format!("{git_ref:?} is not a valid branch, tag or commit: {why}")));
    if git_ref.len() > MAX_REF_LEN {
        return Err(reject("git_ref", format!("is longer than {MAX_REF_LEN} bytes")));
    }
    if git_ref.starts_with('-') {
        return bad("it starts with '-'");
    }
    if let Some(c) = git_ref.chars().find(|c| !(c.is_ascii_alphanumeric() || "._/-+".contains(*c))) {
        return bad(&format!("{c:?} is not allowed"));
    }
    if git_ref.contains("..")
        || git_ref.contains("//")
        || git_ref.starts_with('/')
        || git_ref.ends_with('/')
        || git_ref.ends_with('.')
        || git_ref.ends_with(".lock")
        || git_ref.split('/').any(|part| part.starts_with('.'))
    {
        return bad("git does not allow that form");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
