//! The container object's settings, read from the Worker's vars once per wake-up (an object is
//! re-created when its vars change) instead of on every call. Parsing is plain Rust over a
//! lookup function, so defaults and bad values are tested on the host.

use std::time::Duration;

use crate::{archive::Retention, container::billing::Rate};

/// Port the agent-service listens on in the container (the `CONTAINER_PORT` var overrides).
const DEFAULT_CONTAINER_PORT: u16 = 8080;
/// Idle period before the container is stopped (the `IDLE_TIMEOUT_SECONDS` var overrides).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often container time is charged while it runs (the `METER_INTERVAL_SECONDS` var overrides).
const DEFAULT_METER_INTERVAL: Duration = Duration::from_secs(60);
/// The Messages API the gateway relays to unless `MODEL_API_URL` says otherwise.
const DEFAULT_MODEL_API_URL: &str = "https://api.anthropic.com";
/// One credit per second of container time unless `CREDITS_PER_CONTAINER_SECOND` says otherwise.
const DEFAULT_RATE: Rate = Rate { millicredits_per_second: 1000 };

/// What the object's vars configure.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub container_port: u16,
    pub idle_timeout: Duration,
    pub meter_interval: Duration,
    pub rate: Rate,
    /// The rate as configured, for the balance route (e.g. "0.5").
    pub rate_text: String,
    pub minimum_to_start: i64,
    /// Local mode: the agent-service the object reaches where there is no container runtime.
    pub agent_service_url: Option<String>,
    /// The Messages API the model gateway relays to (`MODEL_API_URL`).
    pub model_api_url: String,
    /// Thousandths of a credit charged per million model tokens (`CREDITS_PER_MILLION_TOKENS`,
    /// decimals allowed); 0, the default: tokens are shown, not charged.
    pub token_rate_millicredits: u64,
    /// Where a task's agent reaches the gateway (`MODEL_GATEWAY_URL`, else `PUBLIC_ORIGIN` +
    /// `/model`); `None`: neither is set.
    pub model_gateway_url: Option<String>,
    /// The origin a task's git reaches the git gateway at (`GIT_GATEWAY_URL`, else
    /// `PUBLIC_ORIGIN`); `None`: neither is set.
    pub git_gateway_url: Option<String>,
    /// Tasks the archive keeps whole per user (`HISTORY_TASKS`).
    pub history_tasks: usize,
    /// Events the archive keeps per task (`ARCHIVE_MAX_EVENTS`).
    pub archive_max_events: u64,
}

impl Settings {
    /// The settings from `var` (a var's text, or `None` when unset); unreadable values fall back
    /// to their defaults.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Settings {
        let seconds = |name: &str| var(name).and_then(|s| s.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let rate = var("CREDITS_PER_CONTAINER_SECOND").and_then(|s| Rate::parse(&s));
        let retention = Retention::read(&var);
        Settings {
            container_port: var("CONTAINER_PORT").and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_CONTAINER_PORT),
            idle_timeout: seconds("IDLE_TIMEOUT_SECONDS").unwrap_or(DEFAULT_IDLE_TIMEOUT),
            meter_interval: seconds("METER_INTERVAL_SECONDS").unwrap_or(DEFAULT_METER_INTERVAL),
            rate_text: if rate.is_some() {
                var("CREDITS_PER_CONTAINER_SECOND").unwrap_or_default()
            } else {
                "1".into()
            },
            rate: rate.unwrap_or(DEFAULT_RATE),
            minimum_to_start: var("MIN_CREDITS_TO_START").and_then(|s| s.parse().ok()).unwrap_or(1),
            agent_service_url: var("AGENT_SERVICE_URL").map(|url| url.trim_end_matches('/').to_string()),
            token_rate_millicredits: var("CREDITS_PER_MILLION_TOKENS")
                .and_then(|s| Rate::parse(&s))
                .map_or(0, |rate| rate.millicredits_per_second),
            model_api_url: var("MODEL_API_URL")
                .map(|url| url.trim().trim_end_matches('/').to_string())
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| DEFAULT_MODEL_API_URL.to_string()),
            model_gateway_url: var("MODEL_GATEWAY_URL")
                .filter(|url| !url.trim().is_empty())
                .or_else(|| {
                    var("PUBLIC_ORIGIN").filter(|o| !o.trim().is_empty()).map(|o| format!("{}/model", o.trim()))
                })
                .map(|url| url.trim().trim_end_matches('/').to_string()),
            git_gateway_url: var("GIT_GATEWAY_URL")
                .filter(|url| !url.trim().is_empty())
                .or_else(|| var("PUBLIC_ORIGIN").filter(|o| !o.trim().is_empty()))
                .map(|url| url.trim().trim_end_matches('/').to_string()),
            history_tasks: retention.history_tasks,
            archive_max_events: retention.max_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::read(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_vars_take_the_documented_defaults() {
        let settings = from(&[]);
        assert_eq!(settings.container_port, 8080);
        assert_eq!(settings.idle_timeout, Duration::from_secs(300));
        assert_eq!(settings.meter_interval, Duration::from_secs(60));
        assert_eq!((settings.rate.millicredits_per_second, settings.rate_text.as_str()), (1000, "1"));
        assert_eq!(settings.minimum_to_start, 1);
        assert_eq!((settings.agent_service_url, settings.model_gateway_url), (None, None));
        assert_eq!(settings.model_api_url, "https://api.anthropic.com");
        assert_eq!(settings.token_rate_millicredits, 0, "tokens are free unless a rate is set");
        assert_eq!(from(&[("CREDITS_PER_MILLION_TOKENS", "2.5")]).token_rate_millicredits, 2_500);
        assert_eq!((settings.history_tasks, settings.archive_max_events), (200, 20_000));
    }

    #[test]
    fn vars_override_and_bad_values_fall_back() {
        let settings = from(&[
            ("CONTAINER_PORT", "9000"),
            ("IDLE_TIMEOUT_SECONDS", "4"),
            ("METER_INTERVAL_SECONDS", "soon"),
            ("CREDITS_PER_CONTAINER_SECOND", "0.5"),
            ("AGENT_SERVICE_URL", "http://127.0.0.1:8080/"),
            ("MODEL_API_URL", "http://127.0.0.1:9/"),
            ("MODEL_GATEWAY_URL", ""),
            ("PUBLIC_ORIGIN", "https://autopilot.example"),
        ]);
        assert_eq!((settings.container_port, settings.idle_timeout), (9000, Duration::from_secs(4)));
        assert_eq!(settings.meter_interval, Duration::from_secs(60), "an unreadable interval keeps the default");
        assert_eq!((settings.rate.millicredits_per_second, settings.rate_text.as_str()), (500, "0.5"));
        assert_eq!(settings.agent_service_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(settings.model_api_url, "http://127.0.0.1:9");
        let gateway = settings.model_gateway_url.as_deref();
        assert_eq!(gateway, Some("https://autopilot.example/model"), "an empty URL is no URL: the site's is used");
        let named = from(&[("MODEL_GATEWAY_URL", "http://127.0.0.1:8787/model/"), ("PUBLIC_ORIGIN", "https://x")]);
        assert_eq!(named.model_gateway_url.as_deref(), Some("http://127.0.0.1:8787/model"));
    }
}
