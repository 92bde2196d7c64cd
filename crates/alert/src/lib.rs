//! Alerts for strongbox: what an operation's outcome says, delivered by mail (SMTP with
//! plain, STARTTLS or TLS connections, optional login) and by webhook (the alert as JSON,
//! or a Slack-compatible `{"text": …}`).
//!
//! This crate delivers; it does not decide. The engine decides when a run or a health
//! check deserves an alert and journals the ones that could not be delivered; the
//! configuration crate builds a [`Notifier`] from `[alerts]`.
//!
//! ```
//! use std::time::Duration;
//! use strongbox_alert::{Alert, Event, Notifier, Webhook, WebhookFormat};
//!
//! let hook = Webhook::new("https://hooks.example/T0/SECRET", WebhookFormat::Slack, Duration::from_secs(10))?;
//! let notifier = Notifier::new(Event::defaults()).with_channel(hook);
//! assert_eq!(notifier.channels(), ["webhook https://hooks.example/*** (slack)"]);
//! assert!(notifier.wants(Event::Failure) && !notifier.wants(Event::Success));
//!
//! let alert = Alert::new(Event::Failure, Some("media"), "backup", "s3://backups/web", "web1")
//!     .with_error("reading /srv/media: permission denied");
//! assert_eq!(alert.summary(), "strongbox backup of media FAILED on web1");
//! assert_eq!(serde_json::to_value(&alert)?["status"], "failure");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod email;
mod error;
mod message;
mod notifier;
mod webhook;

pub use email::{Email, EmailSettings};
pub use error::Error;
pub use message::{Alert, Event};
pub use notifier::{undelivered, Channel, Delivery, Notifier};
pub use webhook::{Webhook, WebhookFormat};

/// `error` and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some libraries repeat their source in their own message.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
