//! Which repository URLs the service will hand to git, decided before git ever runs.
//!
//! git accepts far more than URLs: `ext::` runs arbitrary commands, an argument starting with `-`
//! is read as an option (`--upload-pack=...`), and local paths read the container's own disk. So
//! only https:// and ssh (`ssh://`, `user@host:path`) are accepted by default, and file:// URLs
//! and absolute local paths only when the operator starts the service with local repositories
//! allowed (local development and tests).
//!
//! The URL helpers the rest of the service needs live here too: a URL without its credentials
//! ([`without_credentials`], for a follow-up on its parent's masked URL or a restore's) and the
//! comparison of two URLs as people read them ([`same_repository`], a follow-up's repository
//! against its parent's, over [`normalized`], which also keys prepared workspaces). Masking for display is [`crate::redact`]'s.

use url::Url;

/// Longest repository URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// How a URL reaches git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Ssh,
    File,
}

/// A repository URL that passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What git is given.
    pub url: String,
    /// What people see: `url` with any credentials masked.
    pub display: String,
    /// Credential values embedded in the URL (password or token), to mask in git's output.
    pub secrets: Vec<String>,
    pub transport: Transport,
}

/// Checks `raw` against the policy. `allow_local` admits file:// URLs and absolute paths.
///
/// # Errors
/// A message for people saying what is wrong with the URL.
pub fn parse_repo_url(raw: &str, allow_local: bool) -> Result<RepoUrl, String> {
    if raw.is_empty() {
        return Err("is required".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!("is {} bytes long; at most {MAX_URL_LEN} are allowed", raw.len()));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    if raw.starts_with('-') {
        return Err("must not start with '-' (it would be read as a git option)".into());
    }
    let local_hint = if allow_local { ", file:// or an absolute path" } else { "" };
    let unsupported =
        || format!("is not a supported repository URL; use https://, ssh:// or user@host:path{local_hint}");

    if let Some((scheme, _)) = raw.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        let transport = match scheme.as_str() {
            "https" => Transport::Https,
            // Plain HTTP only on a development service: the edge's git gateway on a loopback
            // port in local mode and tests (`--allow-local-repos`).
            "http" if allow_local => Transport::Https,
            "http" => return Err("http:// repositories are not allowed on this service; use https://".into()),
            "ssh" => Transport::Ssh,
            "file" if allow_local => Transport::File,
            "file" => return Err("file:// repositories are not allowed on this service".into()),
            _ => return Err(unsupported()),
        };
        let authority = &raw[scheme.len() + 3..];
        if transport != Transport::File && (authority.is_empty() || authority.starts_with('/')) {
            return Err("must name a host".into());
        }
        let url = Url::parse(raw).map_err(|e| format!("is not a valid URL: {e}"))?;
        if transport != Transport::File && url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if transport == Transport::File && url.path().len() <= 1 {
            return Err("must name a repository path".into());
        }
        // A lone user name in an https URL is usually a token (https://TOKEN@host/...).
        let credential = url
            .password()
            .or_else(|| (transport == Transport::Https && !url.username().is_empty()).then(|| url.username()));
        // Both spellings can surface in git's messages: as written and percent-decoded.
        let mut secrets: Vec<String> = credential.map(|c| vec![percent_decoded(c), c.to_string()]).unwrap_or_default();
        secrets.dedup();
        return Ok(RepoUrl {
            display: crate::redact::redact_url_credentials(raw),
            url: raw.to_string(),
            secrets,
            transport,
        });
    }
    if raw.contains("::") {
        return Err("uses git's remote-helper syntax (transport::address), which is not allowed".into());
    }
    if raw.starts_with('/') {
        if !allow_local {
            return Err("local paths are not allowed on this service".into());
        }
        return Ok(RepoUrl { url: raw.into(), display: raw.into(), secrets: vec![], transport: Transport::File });
    }
    if is_scp_like(raw) {
        return Ok(RepoUrl { url: raw.into(), display: raw.into(), secrets: vec![], transport: Transport::Ssh });
    }
    Err(unsupported())
}

/// `user@host:path`, git's scp-like ssh syntax: a user, a host without '/', then a path.
fn is_scp_like(raw: &str) -> bool {
    let Some((user_host, path)) = raw.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !host.starts_with('-');
    let user_ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    user_ok && host_ok && !path.is_empty() && !path.starts_with('-')
}

/// Whether two repository URLs name the same repository as a person reads them: credentials,
/// a trailing `/` or `.git`, and the case of the scheme and host do not count.
pub fn same_repository(a: &str, b: &str) -> bool {
    normalized(a) == normalized(b)
}

/// `raw` as people read it: without credentials, its scheme and host lower-cased, without a
/// trailing `/` or `.git`. Two URLs of one repository give the same text ([`same_repository`]).
pub fn normalized(raw: &str) -> String {
    let bare = without_credentials(raw);
    let bare = match Url::parse(&bare) {
        // The url crate lower-cases the scheme and host already.
        Ok(url) if raw.contains("://") => url.to_string(),
        _ => bare,
    };
    let trimmed = bare.trim_end_matches('/');
    trimmed.strip_suffix(".git").unwrap_or(trimmed).to_string()
}

/// `raw` without the user and password of a `scheme://` URL (scp-like `user@host:path` keeps its
/// user, which names the SSH account, not a secret).
pub fn without_credentials(raw: &str) -> String {
    if !raw.contains("://") {
        return raw.to_string();
    }
    match Url::parse(raw) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

fn percent_decoded(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_and_ssh_forms() {
        assert_eq!(parse_repo_url("https://github.com/a/b.git", false).unwrap().transport, Transport::Https);
        assert_eq!(parse_repo_url("ssh://git@github.com/a/b.git", false).unwrap().transport, Transport::Ssh);
        assert_eq!(parse_repo_url("git@github.com:a/b.git", false).unwrap().transport, Transport::Ssh);
    }

    #[test]
    fn refuses_what_git_would_misread() {
        for bad in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "--upload-pack=touch /tmp/pwned",
            "-oProxyCommand=x",
            "http://example.com/a.git",
            "git://example.com/a.git",
            "ftp://example.com/a.git",
            "https:///nohost",
            "https://exa mple.com/a",
            "relative/path",
            "git@host:-oProxyCommand=x",
            "file:///srv/repo.git",
            "/srv/repo.git",
        ] {
            assert!(parse_repo_url(bad, false).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_repo_url("http://127.0.0.1:8787/git/o/r.git", false).unwrap_err().contains("use https://"));
        let gateway = parse_repo_url("http://x-access-token:apgc_1@127.0.0.1:8787/git/o/r.git", true).unwrap();
        assert_eq!(gateway.display, "http://***@127.0.0.1:8787/git/o/r.git", "a development service");
        assert!(parse_repo_url(&format!("https://h/{}", "a".repeat(MAX_URL_LEN)), false)
            .unwrap_err()
            .contains("at most 2048"));
    }

    #[test]
    fn local_repositories_need_the_option() {
        assert_eq!(parse_repo_url("file:///srv/repo.git", true).unwrap().transport, Transport::File);
        assert_eq!(parse_repo_url("/srv/repo.git", true).unwrap().transport, Transport::File);
        assert!(parse_repo_url("ext::sh", true).is_err());
    }

    #[test]
    fn credentials_are_kept_for_git_and_masked_for_people() {
        let repo = parse_repo_url("https://bob:t%40ken@example.com/r.git", false).unwrap();
        assert_eq!(repo.display, "https://***@example.com/r.git");
        assert_eq!(repo.url, "https://bob:t%40ken@example.com/r.git");
        assert_eq!(repo.secrets, ["t@ken", "t%40ken"]);
        let token_only = parse_repo_url("https://ghp_abcdef123@example.com/r.git", false).unwrap();
        assert_eq!(token_only.secrets, ["ghp_abcdef123"]);
    }

    #[test]
    fn the_same_repository_as_people_read_it() {
        assert!(same_repository("https://***@example.com/a/b.git", "https://example.com/a/b"));
        assert!(same_repository("HTTPS://Example.COM/a/b/", "https://example.com/a/b.git"));
        assert!(same_repository("git@github.com:a/b.git", "git@github.com:a/b"));
        assert!(same_repository("file:///srv/r.git", "file:///srv/r.git"));
        assert!(!same_repository("https://example.com/a/b", "https://example.com/a/c"));
        assert!(!same_repository("https://example.com/A/b", "https://example.com/a/b"), "paths keep their case");
        assert_eq!(without_credentials("git@github.com:a/b.git"), "git@github.com:a/b.git");
        assert_eq!(without_credentials("ssh://git:pw@host/r"), "ssh://host/r");
    }
}
