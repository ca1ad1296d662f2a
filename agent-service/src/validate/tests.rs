//! The rules of [`super`], one test per rule, each checking the words a caller reads.

use super::*;
use crate::{spec::TaskSpec, task_id::MAX_TASK_ID_LEN};
use autopilot_contract::v1::{AgentOptions, PreparedStore};

fn limits() -> Limits {
    Limits {
        allow_local_repos: false,
        default_timeout: Duration::from_secs(1800),
        max_timeout: Duration::from_secs(86_400),
    }
}

fn request() -> StartRequest {
    StartRequest {
        repository_url: "https://example.com/r.git".into(),
        git_ref: String::new(),
        prompt: "fix the bug".into(),
        ..Default::default()
    }
}

fn field_of(request: StartRequest) -> String {
    validate_start(&request, &limits()).unwrap_err().field
}

#[test]
fn a_plain_request_gets_the_defaults() {
    let spec = validate_start(&request(), &limits()).unwrap();
    assert_eq!(spec.run.timeout, Duration::from_secs(1800));
    assert_eq!(spec.run.max_turns, 0);
    let Origin::Repository { repo, git_ref } = spec.origin else { panic!("a new task is on its repository") };
    let task = TaskSpec { repo, git_ref, run: spec.run, follow_up: None };
    assert_eq!(task.run.options().timeout.unwrap().seconds, 1800);
}

#[test]
fn each_bad_field_is_named() {
    assert_eq!(field_of(StartRequest { prompt: "  ".into(), ..request() }), "prompt");
    assert_eq!(field_of(StartRequest { prompt: "x".repeat(MAX_PROMPT_BYTES + 1), ..request() }), "prompt");
    assert_eq!(field_of(StartRequest { repository_url: "ext::sh".into(), ..request() }), "repository_url");
    assert_eq!(field_of(StartRequest { git_ref: "--upload-pack=x".into(), ..request() }), "git_ref");
    assert_eq!(field_of(StartRequest { git_ref: "a..b".into(), ..request() }), "git_ref");
    let with = |options: AgentOptions| StartRequest { options: Some(options), ..request() };
    assert_eq!(
        field_of(with(AgentOptions { model: "claude; rm -rf /".into(), ..Default::default() })),
        "options.model"
    );
    assert_eq!(field_of(with(AgentOptions { max_turns: -1, ..Default::default() })), "options.max_turns");
    assert_eq!(field_of(with(AgentOptions { max_budget_usd: -0.5, ..Default::default() })), "options.max_budget_usd");
    assert_eq!(
        field_of(with(AgentOptions { max_budget_usd: f64::NAN, ..Default::default() })),
        "options.max_budget_usd"
    );
    let timeout = |seconds| {
        with(AgentOptions { timeout: Some(pbjson_types::Duration { seconds, nanos: 0 }), ..Default::default() })
    };
    assert_eq!(field_of(timeout(-5)), "options.timeout");
    assert_eq!(field_of(timeout(0)), "options.timeout");
    assert_eq!(field_of(timeout(86_401)), "options.timeout");
}

#[test]
fn real_model_names_and_refs_pass() {
    for model in [
        "claude-sonnet-4-5-20250929",
        "sonnet[1m]",
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "claude-3@20240620",
    ] {
        assert!(validate_model(model).is_ok(), "{model}");
    }
    for git_ref in ["main", "feature/x-1", "v1.2.3", "0123abcd", "release+1"] {
        assert!(validate_ref(git_ref).is_ok(), "{git_ref}");
    }
}

#[test]
fn delivery_options_are_checked_and_defaulted() {
    let with = |delivery: DeliveryOptions| StartRequest { delivery: Some(delivery), ..request() };
    let spec = validate_start(&request(), &limits()).unwrap();
    assert_eq!(
        spec.run.delivery,
        DeliverySpec {
            branch: String::new(),
            push: false,
            author_name: DEFAULT_AUTHOR_NAME.into(),
            author_email: DEFAULT_AUTHOR_EMAIL.into(),
            pull_request: None,
        }
    );
    let named = DeliveryOptions {
        branch: "fix/issue-8".into(),
        push: true,
        author_name: " Ada Lovelace ".into(),
        author_email: "ada@example.com".into(),
        pull_request: None,
    };
    let spec = validate_start(&with(named), &limits()).unwrap();
    assert_eq!((spec.run.delivery.branch.as_str(), spec.run.delivery.push), ("fix/issue-8", true));
    assert_eq!(spec.run.delivery.author_name, "Ada Lovelace");
    for branch in ["-x", "a..b", "refs/../x", "a b", "x.lock", "@"] {
        let err = validate_start(&with(DeliveryOptions { branch: branch.into(), ..Default::default() }), &limits())
            .unwrap_err();
        assert_eq!(err.field, "delivery.branch", "{branch:?}");
    }
    let err =
        validate_start(&with(DeliveryOptions { branch: "-x".into(), ..Default::default() }), &limits()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "delivery.branch \"-x\" is not a usable branch name: it starts with '-', so git could read it as an option"
    );
    for name in ["Eve <eve@x>", "a\nb", "...", &"n".repeat(129)] {
        let options = DeliveryOptions { author_name: name.into(), ..Default::default() };
        assert_eq!(field_of(with(options)), "delivery.author_name", "{name:?}");
    }
    for email in ["a b@x", "<a@x>", "a\n@x", &"e".repeat(255)] {
        let options = DeliveryOptions { author_email: email.into(), ..Default::default() };
        assert_eq!(field_of(with(options)), "delivery.author_email", "{email:?}");
    }
}

#[test]
fn a_pull_request_needs_a_push_a_branch_to_merge_into_and_a_one_line_title() {
    let asking = |push: bool, pull: PullRequestOptions| StartRequest {
        delivery: Some(DeliveryOptions { push, pull_request: Some(pull), ..Default::default() }),
        ..request()
    };
    let open = PullRequestOptions { open: true, ..Default::default() };
    let spec = validate_start(&asking(true, open.clone()), &limits()).unwrap();
    assert_eq!(spec.run.delivery.options().pull_request, Some(open.clone()), "kept as asked, for the edge");
    let err = validate_start(&asking(false, open.clone()), &limits()).unwrap_err();
    assert_eq!(err.to_string(), "delivery.pull_request needs delivery.push: a pull request proposes a pushed branch");
    let not_asked = validate_start(&asking(false, PullRequestOptions::default()), &limits()).unwrap();
    assert_eq!(not_asked.run.delivery.pull_request, None, "open: false asks for nothing");
    let base = PullRequestOptions { base: "a..b".into(), ..open.clone() };
    assert_eq!(field_of(asking(true, base)), "delivery.pull_request.base");
    for title in ["two\nlines", &"t".repeat(MAX_PULL_REQUEST_TITLE_LEN + 1)] {
        let pull = PullRequestOptions { title: title.into(), ..open.clone() };
        assert_eq!(field_of(asking(true, pull)), "delivery.pull_request.title", "{title:?}");
    }
}

#[test]
fn task_ids_are_uuids_or_empty() {
    for id in ["", "3f2c8a4e-9b1d-4e6f-8a2b-1c3d5e7f9a0b", "ABC-123", &"a".repeat(MAX_TASK_ID_LEN)] {
        assert_eq!(validate_task_id(id), Ok(()), "{id:?}");
    }
    for id in ["../etc", "a b", "id\n", "x/y", "é", &"a".repeat(MAX_TASK_ID_LEN + 1)] {
        let err = validate_task_id(id).unwrap_err();
        assert_eq!(err.to_string(), "task_id is not a task id (task ids are UUIDs)", "{id:?}");
    }
}

#[test]
fn cancel_reasons_are_trimmed_and_bounded() {
    assert_eq!(validate_cancel_reason(""), Ok(None));
    assert_eq!(validate_cancel_reason("  \n "), Ok(None));
    assert_eq!(validate_cancel_reason("  wrong repo "), Ok(Some("wrong repo".into())));
    let longest = "r".repeat(MAX_CANCEL_REASON_LEN);
    assert_eq!(validate_cancel_reason(&format!(" {longest} ")), Ok(Some(longest)));
    let err = validate_cancel_reason(&"r".repeat(MAX_CANCEL_REASON_LEN + 1)).unwrap_err();
    assert_eq!(err.to_string(), "reason is longer than 500 bytes");
}

#[test]
fn list_pages_are_bounded_and_tokens_are_the_services_own() {
    let list = |page_size: i32, page_token: &str| {
        validate_list_tasks(&ListTasksRequest { page_size, page_token: page_token.into() })
    };
    assert_eq!(list(0, ""), Ok(PageRequest { size: 20, after: None }));
    assert_eq!(list(1, "").unwrap().size, 1);
    assert_eq!(list(100, "").unwrap().size, 100);
    for size in [-1, 101, i32::MIN, i32::MAX] {
        let err = list(size, "").unwrap_err();
        assert_eq!(err.field, "page_size", "{size}");
        assert_eq!(err.to_string(), format!("page_size must be between 1 and 100 (0: 20); got {size}"));
    }
    let summary = autopilot_contract::v1::TaskSummary {
        task_id: "3f2c8a4e-9b1d-4e6f-8a2b-1c3d5e7f9a0b".into(),
        create_time: Some(pbjson_types::Timestamp { seconds: 1_760_000_000, nanos: 5 }),
        ..Default::default()
    };
    let token = Position::of(&summary).token();
    assert_eq!(list(2, &token).unwrap().after, Some(Position::of(&summary)));
    let forged =
        |id: &str| Position::of(&autopilot_contract::v1::TaskSummary { task_id: id.into(), ..summary.clone() }).token();
    for bad in [
        "xyz".to_string(),
        "a".repeat(10_000),
        forged(""),
        forged("../etc"),
        forged(&"a".repeat(65)),
        format!(" {token}"),
    ] {
        let err = list(0, &bad).unwrap_err();
        assert_eq!(err.to_string(), "page_token is not one this service handed out", "{bad:?}");
    }
}

/// An environment as a Start carries it (the rules themselves are tested with them, in the
/// contract crate's `environment_rules`).
fn environment() -> Environment {
    Environment {
        name: "web".into(),
        variables: [("NODE_ENV".to_string(), "test".to_string())].into(),
        secrets: [("NPM_TOKEN".to_string(), "npm_0123456789".to_string())].into(),
        revision: 3,
        ..Default::default()
    }
}

/// The error of a Start with `environment`, as the caller reads it.
fn environment_error(environment: Environment) -> String {
    validate_start(&StartRequest { environment: Some(environment), ..request() }, &limits()).unwrap_err().to_string()
}

#[test]
fn an_environment_is_kept_with_its_defaults() {
    let spec = validate_start(&StartRequest { environment: Some(environment()), ..request() }, &limits()).unwrap();
    let checked = spec.run.environment.unwrap();
    assert_eq!(checked.name, "web");
    assert_eq!(checked.setup_timeout, DEFAULT_SETUP_TIMEOUT);
    assert_eq!(checked.variables["NODE_ENV"], "test");
    assert_eq!(checked.secrets["NPM_TOKEN"], "npm_0123456789");
    assert_eq!(checked.revision, 3);
    assert!(!format!("{checked:?}").contains("npm_0123456789"), "a spec's Debug shows no secret");
    let store = PreparedStore {
        url: "https://edge.example/cache/prepared".into(),
        token: "apcc_token".into(),
        part_bytes: 16 << 20,
    };
    let with_store = Environment { prepared_store: Some(store.clone()), ..environment() };
    let spec = validate_start(&StartRequest { environment: Some(with_store), ..request() }, &limits()).unwrap();
    assert!(spec.run.environment.as_ref().unwrap().prepared_store.as_ref() == Some(&store));
    assert!(!format!("{spec:?}").contains("apcc_token"), "nor its store's token");
    let none = validate_start(&request(), &limits()).unwrap();
    assert!(none.run.environment.is_none());
    let timeout = |seconds, nanos| Environment {
        setup_timeout: Some(pbjson_types::Duration { seconds, nanos }),
        ..environment()
    };
    for (seconds, nanos) in [(1, 0), (3600, 0), (90, 500_000_000)] {
        let request = StartRequest { environment: Some(timeout(seconds, nanos)), ..request() };
        let spec = validate_start(&request, &limits()).unwrap();
        assert_eq!(spec.run.environment.unwrap().setup_timeout, Duration::new(seconds as u64, nanos as u32));
    }
    for (seconds, nanos) in [(0, 0), (0, 999_999_999), (3600, 1), (-1, 0), (5, -1), (i64::MAX, 0)] {
        assert_eq!(
            environment_error(timeout(seconds, nanos)),
            "environment.setup_timeout must be between 1s and 1h (unset: 10 minutes)",
            "{seconds}s {nanos}ns"
        );
    }
}

#[test]
fn messages_say_what_is_wrong() {
    let err = validate_start(&StartRequest { prompt: String::new(), ..request() }, &limits()).unwrap_err();
    assert_eq!(err.to_string(), "prompt is required");
}
