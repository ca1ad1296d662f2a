//! Sign in with GitHub, end to end: the real edge (`wrangler dev`) against the fake GitHub
//! (`support::fake_github`, GitHub's OAuth endpoints and REST API on a loopback port, as GitHub
//! Enterprise Server would be configured). A browser's path is followed by hand, redirect by
//! redirect, with its cookies: the edge's authorize redirect, GitHub's approval, the callback
//! that signs the browser in; then what a user does with the connection (list repositories,
//! disconnect), an account that connects GitHub, and what a hostile or stale callback gets.

use std::time::Duration;

use autopilot_tests::{
    edge::Edge,
    fake_github::{FakeGithub, CLIENT_ID, CLIENT_SECRET},
    fake_model_api::FakeModelApi,
    service::{Service, ServiceOptions},
};
use reqwest::{header::HeaderMap, redirect::Policy, Client, Response};
use serde_json::Value;

const SIGNUP_CREDITS: &str = "500";

/// The edge configured for the fake GitHub, and the fake with its people and repositories.
struct World {
    edge: Edge,
    github: FakeGithub,
    /// A client that never follows redirects: each hop is checked.
    http: Client,
    _service: Service,
    _model_api: FakeModelApi,
}

impl World {
    async fn start() -> World {
        let github = FakeGithub::start().await.unwrap();
        github.add_user("octo", 1001);
        github.add_user("hubber", 1002);
        github.add_repo("octo", "private-app", true, "main");
        github.grant("octo", "octo/private-app");
        let model_api = FakeModelApi::start().await.unwrap();
        let service = Service::start(&model_api, ServiceOptions::default()).await;
        let vars = [
            ("GITHUB_URL", github.url.as_str()),
            ("GITHUB_API_URL", github.api_url.as_str()),
            ("GITHUB_CLIENT_ID", CLIENT_ID),
            ("GITHUB_CLIENT_SECRET", CLIENT_SECRET),
            ("GITHUB_TOKEN_KEY", "a test deployment's token key 3c1d"),
            ("SIGNUP_CREDITS", SIGNUP_CREDITS),
        ];
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &vars).await;
        let http = Client::builder().redirect(Policy::none()).build().unwrap();
        World { edge, github, http, _service: service, _model_api: model_api }
    }

    async fn get(&self, url: &str, cookies: &[String]) -> Response {
        self.http.get(url).header("cookie", cookies.join("; ")).send().await.unwrap()
    }

    /// A signed-in browser's call on the edge (cookie and the site's Origin, as a page sends).
    async fn call(&self, method: reqwest::Method, path: &str, session: &str) -> (u16, Value) {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.edge.base_url))
            .header("cookie", session)
            .header("origin", &self.edge.base_url)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }
}

/// The `name=value` of each cookie a response sets.
fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .filter(|pair| !pair.ends_with('='))
        .collect()
}

fn location(reply: &Response) -> String {
    reply.headers().get("location").unwrap_or_else(|| panic!("a redirect: {reply:?}")).to_str().unwrap().to_string()
}

/// A browser's sign-in through GitHub as `login`, carrying `cookies` (a session to connect
/// to, if any): the callback's reply, and the state cookie the browser held.
async fn through_github(world: &World, login: &str, cookies_in: &[String], return_to: &str) -> (Response, Vec<String>) {
    world.github.approve_as(login);
    let start = world.get(&format!("{}/auth/github?returnTo={return_to}", world.edge.base_url), cookies_in).await;
    assert_eq!(start.status(), 302, "off to GitHub");
    let authorize = location(&start);
    assert!(authorize.starts_with(&format!("{}/login/oauth/authorize?", world.github.url)), "{authorize}");
    assert!(authorize.contains(&format!("client_id={CLIENT_ID}")), "{authorize}");
    let state_cookies = cookies(start.headers());
    assert!(state_cookies.iter().any(|c| c.starts_with("ap_github_state=")), "{state_cookies:?}");
    let approved = world.get(&authorize, &[]).await;
    assert_eq!(approved.status(), 302, "GitHub sends the browser back");
    let callback = location(&approved);
    assert!(callback.starts_with(&format!("{}/auth/github/callback?", world.edge.base_url)), "{callback}");
    let mut browser = cookies_in.to_vec();
    browser.extend(state_cookies.clone());
    (world.get(&callback, &browser).await, state_cookies)
}

/// The browser's session cookie after a successful callback, having checked where it goes.
fn session_of(reply: &Response, return_to: &str) -> String {
    assert_eq!(reply.status(), 302, "signed in: {reply:?}");
    assert_eq!(location(reply), return_to);
    cookies(reply.headers()).into_iter().find(|c| c.starts_with("autopilot_session=")).expect("a session cookie")
}

#[tokio::test]
async fn people_sign_in_with_github_connect_it_and_disconnect_it() {
    let world = World::start().await;

    // A first sign-in creates the account, with the sign-up credits, and lands where it began.
    let (reply, _) = through_github(&world, "octo", &[], "/tasks/abc").await;
    let octo = session_of(&reply, "/tasks/abc");
    let (status, me) = world.call(reqwest::Method::GET, "/api/github", &octo).await;
    assert_eq!((status, &me["connected"], &me["login"]), (200, &Value::Bool(true), &Value::from("octo")), "{me}");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &octo).await;
    assert_eq!(balance["balance"].to_string(), SIGNUP_CREDITS, "{balance}");

    // Its token reaches the private repository; the page's picker lists it.
    let (status, page) = world.call(reqwest::Method::GET, "/api/github/repositories", &octo).await;
    assert_eq!(status, 200, "{page}");
    let listed = &page["repositories"][0];
    assert_eq!((&listed["fullName"], &listed["private"]), (&Value::from("octo/private-app"), &Value::Bool(true)));
    let (status, refused) = world.call(reqwest::Method::GET, "/api/github/repositories?pageToken=x", &octo).await;
    assert_eq!(status, 400, "{refused}");

    // Signing in again is the same account (no second sign-up grant).
    let (reply, _) = through_github(&world, "octo", &[], "/").await;
    let again = session_of(&reply, "/");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &again).await;
    assert_eq!(balance["balance"].to_string(), SIGNUP_CREDITS, "{balance}");

    // Every call to GitHub's API said who it is and which API it speaks.
    let api_calls: Vec<_> = world.github.requests().into_iter().filter(|r| r.path.starts_with("/api/v3")).collect();
    assert!(!api_calls.is_empty());
    for call in &api_calls {
        let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(!header("user-agent").is_empty(), "{} {}", call.method, call.path);
        assert_eq!(header("accept"), "application/vnd.github+json", "{}", call.path);
        assert_eq!(header("x-github-api-version"), "2022-11-28", "{}", call.path);
    }

    // A token about to expire is renewed with its refresh token before it is used.
    world.github.set_token_lifetime(Duration::from_secs(60));
    let (reply, _) = through_github(&world, "octo", &[], "/").await;
    let short_lived = session_of(&reply, "/");
    let renewals_before = renewals(&world.github);
    let (status, page) = world.call(reqwest::Method::GET, "/api/github/repositories", &short_lived).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(renewals(&world.github), renewals_before + 1, "renewed once, then used");
    world.github.set_token_lifetime(autopilot_tests::fake_github::ACCESS_TOKEN_LIFETIME);

    // No GitHub token is in any answer, or in the edge's log.
    let live = world.github.live_tokens();
    assert!(!live.is_empty());
    let log = world.edge.log();
    for token in &live {
        assert!(!me.to_string().contains(token) && !page.to_string().contains(token) && !log.contains(token));
    }

    // Disconnecting deletes the connection and revokes the token at GitHub; GitHub-only calls
    // then say to connect it.
    let (status, gone) = world.call(reqwest::Method::DELETE, "/api/github", &octo).await;
    assert_eq!((status, &gone["connected"]), (200, &Value::Bool(false)), "{gone}");
    assert!(world.github.revoked_tokens().iter().any(|t| live.contains(t)), "revoked at GitHub");
    let (status, refused) = world.call(reqwest::Method::GET, "/api/github/repositories", &octo).await;
    assert_eq!(status, 409, "FAILED_PRECONDITION: {refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("GitHub is not connected"), "{refused}");

    // An account signed in with an API token connects GitHub to itself; that GitHub account
    // cannot then be connected to another account.
    let alice_token = world.edge.user("alice", 0).await;
    let signed_in = world
        .http
        .post(format!("{}/api/auth/signin", world.edge.base_url))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    let alice = cookies(signed_in.headers()).into_iter().find(|c| c.starts_with("autopilot_session=")).unwrap();
    let (reply, _) = through_github(&world, "hubber", std::slice::from_ref(&alice), "/").await;
    let connected = session_of(&reply, "/");
    let (_, me) = world.call(reqwest::Method::GET, "/api/github", &connected).await;
    assert_eq!(me["login"], "hubber", "{me}");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &connected).await;
    assert_eq!(balance["balance"], 0, "a connected account gets no sign-up credits: {balance}");
    let (reply, _) = through_github(&world, "octo", std::slice::from_ref(&alice), "/").await;
    assert_eq!(reply.status(), 409, "octo's GitHub is another account's");

    stale_and_hostile_callbacks_are_refused_in_words(&world).await;
}

/// How many times the edge renewed a token at the fake's token endpoint.
fn renewals(github: &FakeGithub) -> usize {
    github.requests().iter().filter(|r| r.path.contains("access_token") && r.body.contains("refresh_token")).count()
}

async fn stale_and_hostile_callbacks_are_refused_in_words(world: &World) {
    let callback = |query: &str| format!("{}/auth/github/callback?{query}", world.edge.base_url);
    // A callback replayed (its state was used) or from another browser (no state cookie).
    world.github.approve_as("octo");
    let start = world.get(&format!("{}/auth/github", world.edge.base_url), &[]).await;
    let state_cookies = cookies(start.headers());
    let approved = world.get(&location(&start), &[]).await;
    let back = location(&approved);
    let other_browser = world.get(&back, &[]).await;
    assert_eq!(other_browser.status(), 400, "no state cookie");
    let first = world.get(&back, &state_cookies).await;
    assert_eq!(first.status(), 302, "the right browser, once");
    let replayed = world.get(&back, &state_cookies).await;
    assert_eq!(replayed.status(), 400, "a state is single use");
    let body: Value = replayed.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("sign in with GitHub again"), "{body}");
    // A forged state, a callback without a code, GitHub's own refusal.
    let forged = world.get(&callback("code=x&state=forged"), &["ap_github_state=forged".into()]).await;
    assert_eq!(forged.status(), 400);
    let start = world.get(&format!("{}/auth/github", world.edge.base_url), &[]).await;
    let state_cookies = cookies(start.headers());
    let state = state_cookies[0].trim_start_matches("ap_github_state=").to_string();
    let no_code = world.get(&callback(&format!("state={state}")), &state_cookies).await;
    assert_eq!(no_code.status(), 400);
    let body: Value = no_code.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no code"), "{body}");
    let denied = world.get(&callback("error=access_denied&error_description=The+user+denied"), &[]).await;
    assert_eq!(denied.status(), 403);
    // A code GitHub does not know (used, or made up): GitHub's words.
    let start = world.get(&format!("{}/auth/github", world.edge.base_url), &[]).await;
    let state_cookies = cookies(start.headers());
    let state = state_cookies[0].trim_start_matches("ap_github_state=").to_string();
    let made_up = world.get(&callback(&format!("code=made-up&state={state}")), &state_cookies).await;
    assert_eq!(made_up.status(), 400);
    let body: Value = made_up.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("bad_verification_code"), "{body}");
    // The edge keeps serving.
    let health = world.http.get(format!("{}/health", world.edge.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
