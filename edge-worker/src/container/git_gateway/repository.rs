//! Which repositories are GitHub's, and the gateway's paths, as plain Rust: a task's
//! `repositoryUrl` is a GitHub repository when it is `GITHUB_URL/owner/name` (with or without
//! `.git`, in `GITHUB_URL`'s own scheme, host and port); the gateway serves git's smart HTTP for
//! it under `/git/owner/name.git/...`. Names are GitHub's characters only, so no path can
//! traverse, and `owner/name` is compared without regard to case, as GitHub does.

/// A GitHub repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub owner: String,
    pub name: String,
}

impl Repository {
    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Whether `full_name` names this repository.
    pub fn is(&self, full_name: &str) -> bool {
        self.full_name().eq_ignore_ascii_case(full_name)
    }
}

/// What git asks of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitCall {
    /// `GET info/refs?service=git-upload-pack` (fetch) or `...git-receive-pack` (push).
    Refs { push: bool },
    /// `POST git-upload-pack`: a fetch.
    UploadPack,
    /// `POST git-receive-pack`: a push.
    ReceivePack,
}

impl GitCall {
    /// The path after the repository, as GitHub serves it.
    pub fn upstream_path(self) -> &'static str {
        match self {
            GitCall::Refs { push: false } => "info/refs?service=git-upload-pack",
            GitCall::Refs { push: true } => "info/refs?service=git-receive-pack",
            GitCall::UploadPack => "git-upload-pack",
            GitCall::ReceivePack => "git-receive-pack",
        }
    }
}

/// The prefix of the gateway's paths.
pub const GIT_PREFIX: &str = "/git/";

/// One of GitHub's names: letters, digits, `.`, `_`, `-`; not `.` or `..`.
fn github_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `owner/name[.git]` read as a repository.
fn repository(owner: &str, name: &str) -> Option<Repository> {
    let name = name.strip_suffix(".git").unwrap_or(name);
    (github_name(owner) && github_name(name)).then(|| Repository { owner: owner.into(), name: name.into() })
}

/// The GitHub repository `url` names on the GitHub at `github_url`, if it names one there.
pub fn github_repository(url: &str, github_url: &str) -> Option<Repository> {
    let url = worker::Url::parse(url.trim()).ok()?;
    let github = worker::Url::parse(github_url).ok()?;
    let same_site =
        url.scheme() == github.scheme() && url.host_str() == github.host_str() && url.port() == github.port();
    if !same_site || url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let mut parts = url.path().trim_matches('/').split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else { return None };
    repository(owner, name)
}

/// The repository and call of a gateway request (`method`, `path`, `query`).
///
/// # Errors
/// Why it is not a git smart-HTTP call of the gateway, in words.
pub fn gateway_call(method: &str, path: &str, query: Option<&str>) -> Result<(Repository, GitCall), String> {
    let unknown = || format!("the git gateway serves git's smart HTTP only, not {method} {path}");
    let rest = path.strip_prefix(GIT_PREFIX).ok_or_else(unknown)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(owner), Some(name), Some(call)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(unknown());
    };
    let repository = repository(owner, name).ok_or_else(unknown)?;
    let call = match (method, call, query) {
        ("GET", "info/refs", Some("service=git-upload-pack")) => GitCall::Refs { push: false },
        ("GET", "info/refs", Some("service=git-receive-pack")) => GitCall::Refs { push: true },
        ("POST", "git-upload-pack", None) => GitCall::UploadPack,
        ("POST", "git-receive-pack", None) => GitCall::ReceivePack,
        _ => return Err(unknown()),
    };
    Ok((repository, call))
}

/// The URL a task's git uses for `repository` through the gateway at `gateway_base` (the
/// edge's origin), with `credential` as its password.
pub fn gateway_url(gateway_base: &str, repository: &Repository, credential: &str) -> Option<String> {
    let mut url = worker::Url::parse(&format!(
        "{}{GIT_PREFIX}{}/{}.git",
        gateway_base.trim_end_matches('/'),
        repository.owner,
        repository.name
    ))
    .ok()?;
    url.set_username("x-access-token").ok()?;
    url.set_password(Some(credential)).ok()?;
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: &str = "https://github.com";

    #[test]
    fn a_github_repository_is_named_on_githubs_own_site_only() {
        let app = Repository { owner: "octo".into(), name: "app".into() };
        for url in ["https://github.com/octo/app", "https://github.com/octo/app.git", "https://github.com/octo/app/"] {
            assert_eq!(github_repository(url, GITHUB), Some(app.clone()), "{url}");
        }
        for url in [
            "http://github.com/octo/app",
            "https://gitlab.com/octo/app",
            "https://github.com.evil.example/octo/app",
            "https://github.com/octo",
            "https://github.com/octo/app/tree/main",
            "https://github.com/../app",
            "https://github.com/octo/a%2Fb",
            "https://github.com/octo/app?x=1",
            "file:///srv/octo/app.git",
        ] {
            assert_eq!(github_repository(url, GITHUB), None, "{url}");
        }
        let local = "http://127.0.0.1:4567";
        assert!(github_repository("http://127.0.0.1:4567/octo/app", local).is_some(), "a loopback stand-in");
        assert!(github_repository("http://127.0.0.1:9999/octo/app", local).is_none(), "another port");
        assert!(app.is("OCTO/App"), "GitHub's names ignore case");
    }

    #[test]
    fn the_gateway_serves_gits_smart_http_calls_and_nothing_else() {
        let (repository, call) =
            gateway_call("GET", "/git/octo/app.git/info/refs", Some("service=git-receive-pack")).unwrap();
        assert_eq!((repository.full_name().as_str(), call), ("octo/app", GitCall::Refs { push: true }));
        assert_eq!(call.upstream_path(), "info/refs?service=git-receive-pack");
        assert_eq!(gateway_call("POST", "/git/octo/app/git-upload-pack", None).unwrap().1, GitCall::UploadPack);
        for (method, path, query) in [
            ("GET", "/git/octo/app.git/info/refs", None),
            ("GET", "/git/octo/app.git/HEAD", None),
            ("POST", "/git/../app.git/git-receive-pack", None),
            ("POST", "/git/octo/app.git/../../x/git-receive-pack", None),
            ("GET", "/git/octo/app.git/objects/info/packs", None),
            ("DELETE", "/git/octo/app.git/git-receive-pack", None),
        ] {
            assert!(gateway_call(method, path, query).is_err(), "{method} {path}");
        }
    }

    #[test]
    fn a_tasks_url_carries_its_credential_as_the_password() {
        let app = Repository { owner: "octo".into(), name: "app".into() };
        let url = gateway_url("http://127.0.0.1:8787/", &app, "apgc_x_y").unwrap();
        assert_eq!(url, "http://x-access-token:apgc_x_y@127.0.0.1:8787/git/octo/app.git");
    }
}
