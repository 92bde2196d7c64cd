use std::path::PathBuf;

/// Why an alert could not be delivered (or a channel could not be set up).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `smtp` setting is not `smtp://host[:port]` or `smtps://host[:port]`.
    #[error("SMTP server {url:?}: {reason}")]
    SmtpUrl {
        /// The setting as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A sender or recipient address does not parse.
    #[error("mail address {address:?}")]
    Address {
        /// The address as given.
        address: String,
        /// Why it does not parse.
        source: lettre::address::AddressError,
    },
    /// The CA certificate file for the SMTP server could not be read or parsed.
    #[error("CA certificate {}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The message could not be built.
    #[error("building the mail to {server}")]
    Message {
        /// The server, `smtp://host:port`.
        server: String,
        /// Why.
        source: lettre::error::Error,
    },
    /// The SMTP server refused the message, or could not be reached.
    #[error("sending mail through {server}")]
    Smtp {
        /// The server, `smtp://host:port`.
        server: String,
        /// Why.
        source: lettre::transport::smtp::Error,
    },
    /// The SMTP server took the connection and then did not answer in time.
    #[error("sending mail through {server}: no answer within {} s", timeout.as_secs_f32())]
    SmtpTimeout {
        /// The server, `smtp://host:port`.
        server: String,
        /// How long strongbox waited.
        timeout: std::time::Duration,
        /// The failed read or write.
        source: lettre::transport::smtp::Error,
    },
    /// The webhook URL does not parse.
    #[error("webhook URL {url}: not an http(s) URL")]
    WebhookUrl {
        /// The URL, its path hidden.
        url: String,
    },
    /// The webhook could not be reached.
    #[error("posting to webhook {url}")]
    Webhook {
        /// The URL, its path hidden (it often is the token).
        url: String,
        /// Why, without the URL.
        source: reqwest::Error,
    },
    /// The webhook answered with an error status.
    #[error("webhook {url} answered {status}")]
    WebhookStatus {
        /// The URL, its path hidden.
        url: String,
        /// The HTTP status.
        status: u16,
    },
}
