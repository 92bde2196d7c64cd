//! HTTP receivers: the alert's JSON, or a Slack-compatible `{"text": …}`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Alert, Channel, Error};

/// How a webhook's body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The [`Alert`] as JSON.
    #[default]
    Json,
    /// A Slack (and Mattermost, Rocket.Chat) incoming-webhook message.
    Slack,
}

/// The webhook channel.
pub struct Webhook {
    url: reqwest::Url,
    shown: String,
    format: WebhookFormat,
    timeout: Duration,
}

/// Shows the URL redacted: its path or query is the token.
impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Webhook {
    /// A channel posting to `url`.
    pub fn new(url: &str, format: WebhookFormat, timeout: Duration) -> Result<Self, Error> {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        let Some(parsed) = parsed else {
            let url = url.split_once("://").map_or_else(
                || "***".to_string(),
                |(scheme, _)| format!("{scheme}://***"),
            );
            return Err(Error::WebhookUrl { url });
        };
        Ok(Webhook {
            shown: shown(&parsed),
            url: parsed,
            format,
            timeout,
        })
    }
}

/// The URL without its path, query or login, which often hold the token.
fn shown(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}/***",
        url.scheme(),
        url.host_str().unwrap_or_default()
    )
}

impl Channel for Webhook {
    fn describe(&self) -> String {
        let format = match self.format {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
        };
        format!("webhook {} ({format})", self.shown)
    }

    fn send(&self, alert: &Alert) -> Result<(), Error> {
        let body = match self.format {
            WebhookFormat::Json => serde_json::to_vec(alert).expect("alerts serialize"),
            WebhookFormat::Slack => alert.slack().to_string().into_bytes(),
        };
        let failed = |source: reqwest::Error| Error::Webhook {
            url: self.shown.clone(),
            source: source.without_url(),
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("strongbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(failed)?;
        let response = client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::WebhookStatus {
                url: self.shown.clone(),
                status: status.as_u16(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(
        "https://hooks.slack.com/services/T0/B0/SECRET",
        "webhook https://hooks.slack.com/*** (json)"
    )]
    #[case(
        "http://user:pw@127.0.0.1:8080/x?token=SECRET",
        "webhook http://127.0.0.1:8080/*** (json)"
    )]
    fn urls_are_shown_without_their_token(#[case] url: &str, #[case] described: &str) {
        let hook = Webhook::new(url, WebhookFormat::Json, Duration::from_secs(1)).unwrap();
        assert_eq!(hook.describe(), described);
        let debugged = format!("{hook:?}");
        assert!(
            !debugged.contains("SECRET") && !debugged.contains("pw"),
            "{debugged}"
        );
    }

    #[rstest]
    #[case("ftp://host/SECRET")]
    #[case("hooks.example/SECRET")]
    #[case("mailto:ops@SECRET")]
    fn bad_urls_are_refused_without_their_token(#[case] url: &str) {
        let error = Webhook::new(url, WebhookFormat::Slack, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("SECRET") && error.contains("not an http(s) URL"),
            "{error}"
        );
    }
}
