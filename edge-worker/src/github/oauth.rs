//! The GitHub App's user-to-server OAuth flow, as plain Rust: the authorize URL a browser is
//! sent to, the state that binds the callback to that browser, what GitHub's token endpoint
//! answers (a grant, or an error in its own shape, which it sends with HTTP 200), and when a
//! grant needs renewing. The calls themselves are the [`super::client`]'s.

use serde::{Deserialize, Serialize};

/// The cookie that binds a sign-in's `state` to the browser that began it.
pub const STATE_COOKIE: &str = "ap_github_state";
/// How long a browser has to come back from GitHub's authorize page.
pub const STATE_TTL_SECONDS: u64 = 600;
/// A token is renewed this long before it expires (a task's git operations and pull request
/// must not meet an expiry halfway).
pub const RENEW_BEFORE_MS: u64 = 5 * 60 * 1000;

/// Where GitHub's authorize page is, for `client_id` to come back to `redirect_uri` with `state`.
pub fn authorize_url(github_url: &str, client_id: &str, redirect_uri: &str, state: &str) -> String {
    let query: String = url_form(&[("client_id", client_id), ("redirect_uri", redirect_uri), ("state", state)]);
    format!("{}/login/oauth/authorize?{query}", github_url.trim_end_matches('/'))
}

/// `pairs` as `application/x-www-form-urlencoded`.
pub fn url_form(pairs: &[(&str, &str)]) -> String {
    worker::Url::parse_with_params("x:", pairs)
        .map(|url| url.query().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// The `Set-Cookie` value carrying a sign-in's state back to the callback only.
pub fn state_cookie(state: &str) -> String {
    format!("{STATE_COOKIE}={state}; HttpOnly; Secure; SameSite=Lax; Path=/auth/github; Max-Age={STATE_TTL_SECONDS}")
}

/// The `Set-Cookie` value that deletes it once used.
pub fn clear_state_cookie() -> String {
    format!("{STATE_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/auth/github; Max-Age=0")
}

/// What the edge keeps of a sign-in under way, under its state (single use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSignIn {
    /// The account to connect GitHub to: the user already signed in, if any; otherwise the
    /// GitHub account signs in (and is created on its first sign-in).
    pub connect_to: Option<String>,
    /// Where the page goes afterwards (a path on this site).
    pub return_to: String,
}

/// The path to return to after a sign-in: a path on this site, never another origin.
pub fn safe_return_path(asked: Option<&str>) -> String {
    match asked {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_string(),
        _ => "/".to_string(),
    }
}

/// The account id of a GitHub user signing in for the first time (GitHub's numeric id is stable
/// across renames; the login is not).
pub fn account_for(github_id: u64) -> String {
    format!("github-{github_id}")
}

/// A grant from GitHub's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub access_token: String,
    /// When the access token expires (ms since the epoch); `None` for one that does not.
    pub access_expires_ms: Option<u64>,
    pub refresh_token: Option<String>,
    pub refresh_expires_ms: Option<u64>,
}

impl Grant {
    /// Whether the access token, issued at `issued_ms`, is to be renewed at `now_ms`: when at
    /// most [`RENEW_BEFORE_MS`] of it are left, or half of its lifetime for a short-lived one
    /// (else a token shorter than that window would be renewed on every use).
    pub fn needs_renewal(&self, now_ms: u64, issued_ms: u64) -> bool {
        self.access_expires_ms.is_some_and(|expires| {
            let window = RENEW_BEFORE_MS.min(expires.saturating_sub(issued_ms) / 2);
            expires <= now_ms + window
        })
    }

    /// Whether it can be renewed at `now_ms`.
    pub fn renewable(&self, now_ms: u64) -> bool {
        self.refresh_token.is_some() && self.refresh_expires_ms.is_none_or(|expires| expires > now_ms)
    }
}

/// Why GitHub's token endpoint refused, in its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: String,
    pub description: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.description.is_empty() {
            true => write!(f, "GitHub refused: {}", self.error),
            false => write!(f, "GitHub refused: {} ({})", self.description, self.error),
        }
    }
}

/// Reads the token endpoint's JSON answer (`Accept: application/json`) received at `now_ms`.
///
/// # Errors
/// GitHub's own refusal (it answers errors with HTTP 200 and an `error` field), or a body that
/// is neither.
pub fn read_grant(body: &str, now_ms: u64) -> Result<Grant, Refused> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<u64>,
        refresh_token: Option<String>,
        refresh_token_expires_in: Option<u64>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|_| Refused {
        error: "unreadable_answer".into(),
        description: "GitHub's token endpoint did not answer JSON".into(),
    })?;
    match (answer.access_token.filter(|t| !t.is_empty()), answer.error) {
        (Some(access_token), None) => Ok(Grant {
            access_token,
            access_expires_ms: answer.expires_in.map(|s| now_ms + s * 1000),
            refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
            refresh_expires_ms: answer.refresh_token_expires_in.map(|s| now_ms + s * 1000),
        }),
        (_, error) => Err(Refused {
            error: error.unwrap_or_else(|| "no_token".into()),
            description: answer.error_description.unwrap_or_default(),
        }),
    }
}

/// The page number a GitHub `Link` header's `rel="next"` points at, if any.
pub fn next_page(link: Option<&str>) -> Option<u32> {
    let next = link?.split(',').find(|part| part.contains("rel=\"next\""))?;
    let url = next.split(';').next()?.trim().trim_start_matches('<').trim_end_matches('>');
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("page=")).and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_carries_the_client_the_callback_and_the_state_encoded() {
        let url = authorize_url("https://github.com/", "Iv1.abc", "https://ap.example/auth/github/callback", "s t");
        assert_eq!(
            url,
            "https://github.com/login/oauth/authorize?client_id=Iv1.abc&redirect_uri=https%3A%2F%2Fap.example%2Fauth\
             %2Fgithub%2Fcallback&state=s+t"
        );
    }

    #[test]
    fn a_grant_is_read_with_its_expiries_and_a_refusal_in_githubs_words() {
        let body = r#"{"access_token":"ghu_a","expires_in":28800,"refresh_token":"ghr_b",
            "refresh_token_expires_in":15811200,"token_type":"bearer","scope":""}"#;
        let grant = read_grant(body, 1_000).unwrap();
        assert_eq!(grant.access_token, "ghu_a");
        assert_eq!((grant.access_expires_ms, grant.refresh_expires_ms), (Some(28_801_000), Some(15_811_201_000)));
        assert!(!grant.needs_renewal(1_000, 1_000) && grant.needs_renewal(28_801_000 - RENEW_BEFORE_MS, 1_000));
        let short_lived = Grant { access_expires_ms: Some(61_000), ..grant.clone() };
        assert!(!short_lived.needs_renewal(11_000, 1_000), "a 60 s token is not renewed at once");
        assert!(short_lived.needs_renewal(31_000, 1_000), "but once half of it is gone");
        assert!(grant.renewable(2_000) && !grant.renewable(15_811_201_000));

        let refused = r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.",
            "error_uri":"https://docs.github.com/"}"#;
        let refused = read_grant(refused, 0).unwrap_err();
        assert_eq!(refused.error, "bad_verification_code");
        assert_eq!(
            refused.to_string(),
            "GitHub refused: The code passed is incorrect or expired. (bad_verification_code)"
        );
        assert_eq!(read_grant("<html>", 0).unwrap_err().error, "unreadable_answer");
    }

    #[test]
    fn a_token_that_does_not_expire_is_never_renewed() {
        let grant = read_grant(r#"{"access_token":"gho_x","token_type":"bearer"}"#, 5).unwrap();
        assert!(!grant.needs_renewal(u64::MAX / 2, 0) && !grant.renewable(5));
    }

    #[test]
    fn after_sign_in_the_page_returns_only_to_a_path_of_this_site() {
        assert_eq!(safe_return_path(Some("/tasks/abc")), "/tasks/abc");
        for hostile in [Some("https://evil.example/"), Some("//evil.example"), Some("/\\evil"), Some(""), None] {
            assert_eq!(safe_return_path(hostile), "/", "{hostile:?}");
        }
    }

    #[test]
    fn the_next_page_is_read_from_githubs_link_header() {
        let link = r#"<https://api.github.com/user/repos?per_page=50&page=2>; rel="next", <https://api.github.com/user/repos?per_page=50&page=4>; rel="last""#;
        assert_eq!(next_page(Some(link)), Some(2));
        let last = r#"<https://api.github.com/user/repos?page=3>; rel="prev", <https://api.github.com/user/repos?page=1>; rel="first""#;
        assert_eq!(next_page(Some(last)), None);
        assert_eq!(next_page(None), None);
    }
}
