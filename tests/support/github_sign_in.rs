//! A browser's sign-in with GitHub, followed by hand redirect by redirect with its cookies: the
//! edge's authorize redirect, the fake GitHub's approval, the callback that signs the browser in
//! (or connects GitHub to the account it is signed in to). Shared by the GitHub tests, which
//! check each hop, and by those that only need a user with GitHub connected.

use reqwest::{header::HeaderMap, redirect::Policy, Client, Response};

use crate::fake_github::{FakeGithub, CLIENT_ID};

/// A client that never follows redirects: each hop is checked.
pub fn browser() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// The `name=value` of each cookie a response sets.
pub fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .filter(|pair| !pair.ends_with('='))
        .collect()
}

pub fn location(reply: &Response) -> String {
    reply.headers().get("location").unwrap_or_else(|| panic!("a redirect: {reply:?}")).to_str().unwrap().to_string()
}

async fn get(http: &Client, url: &str, cookies: &[String]) -> Response {
    http.get(url).header("cookie", cookies.join("; ")).send().await.unwrap()
}

/// A browser's sign-in through GitHub as `login` on the edge at `edge_url`, carrying `cookies_in`
/// (a session to connect to, if any): the callback's reply, and the state cookie the browser held.
pub async fn through_github(
    http: &Client,
    edge_url: &str,
    github: &FakeGithub,
    login: &str,
    cookies_in: &[String],
    return_to: &str,
) -> (Response, Vec<String>) {
    github.approve_as(login);
    let start = get(http, &format!("{edge_url}/auth/github?returnTo={return_to}"), cookies_in).await;
    assert_eq!(start.status(), 302, "off to GitHub");
    let authorize = location(&start);
    assert!(authorize.starts_with(&format!("{}/login/oauth/authorize?", github.url)), "{authorize}");
    assert!(authorize.contains(&format!("client_id={CLIENT_ID}")), "{authorize}");
    let state_cookies = cookies(start.headers());
    assert!(state_cookies.iter().any(|c| c.starts_with("ap_github_state=")), "{state_cookies:?}");
    let approved = get(http, &authorize, &[]).await;
    assert_eq!(approved.status(), 302, "GitHub sends the browser back");
    let callback = location(&approved);
    assert!(callback.starts_with(&format!("{edge_url}/auth/github/callback?")), "{callback}");
    let mut browser = cookies_in.to_vec();
    browser.extend(state_cookies.clone());
    (get(http, &callback, &browser).await, state_cookies)
}

/// The browser's session cookie after a successful callback, having checked where it goes.
pub fn session_of(reply: &Response, return_to: &str) -> String {
    assert_eq!(reply.status(), 302, "signed in: {reply:?}");
    assert_eq!(location(reply), return_to);
    cookies(reply.headers()).into_iter().find(|c| c.starts_with("autopilot_session=")).expect("a session cookie")
}

/// Connects `login`'s GitHub to the account of `api_token` (signed in with it first, as the page
/// does); answers the session cookie.
pub async fn connect_github(edge_url: &str, github: &FakeGithub, login: &str, api_token: &str) -> String {
    let http = browser();
    let signed_in = http.post(format!("{edge_url}/api/auth/signin")).bearer_auth(api_token).send().await.unwrap();
    let session = cookies(signed_in.headers()).into_iter().find(|c| c.starts_with("autopilot_session="));
    let session = session.expect("signed in with the API token");
    let (reply, _) = through_github(&http, edge_url, github, login, std::slice::from_ref(&session), "/").await;
    session_of(&reply, "/")
}
