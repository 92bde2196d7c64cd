//! The channels of a configuration, and which events they are sent.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::{Alert, Error, Event};

/// A way to deliver an alert.
pub trait Channel: Send + Sync + fmt::Debug {
    /// What it is, without secrets: `email via smtp://mail:587 to ops@example.com`.
    fn describe(&self) -> String;
    /// Deliver one alert.
    fn send(&self, alert: &Alert) -> Result<(), Error>;
}

/// How sending one alert through one channel went.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// The channel, described.
    pub channel: String,
    /// Whether it was delivered.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every configured channel and the events they get.
#[derive(Debug, Default)]
pub struct Notifier {
    on: Vec<Event>,
    channels: Vec<Box<dyn Channel>>,
    attempts: AtomicUsize,
}

impl Notifier {
    /// A notifier sending `on` events (tests always) to no channel yet.
    pub fn new(on: Vec<Event>) -> Self {
        Notifier {
            on,
            ..Notifier::default()
        }
    }

    /// With one more channel.
    pub fn with_channel(mut self, channel: impl Channel + 'static) -> Self {
        self.channels.push(Box::new(channel));
        self
    }

    /// The channels, described: each by its description, numbered (`#1`, `#2`) where two
    /// describe alike (two webhooks on one host, their paths hidden), so that a name
    /// stands for one channel.
    pub fn channels(&self) -> Vec<String> {
        let described: Vec<String> = self.channels.iter().map(|c| c.describe()).collect();
        described
            .iter()
            .enumerate()
            .map(
                |(i, d)| match described.iter().filter(|o| *o == d).count() {
                    1 => d.clone(),
                    _ => {
                        let nth = described[..i].iter().filter(|o| *o == d).count() + 1;
                        format!("{d} #{nth}")
                    }
                },
            )
            .collect()
    }

    /// Whether any channel is configured.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Whether `event` is sent anywhere.
    pub fn wants(&self, event: Event) -> bool {
        self.has_channels() && (event == Event::Test || self.on.contains(&event))
    }

    /// How many alerts this notifier was asked to send and wanted (whether or not they
    /// arrived).
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Send `alert` through every channel, if its event is wanted. A failed delivery is
    /// logged and returned, never raised: an alert must not change what the operation did.
    pub fn notify(&self, alert: &Alert) -> Vec<Delivery> {
        self.notify_only(alert, None)
    }

    /// [`Self::notify`] through the channels named `only` (as [`Delivery::channel`] names
    /// them), or every channel: an alert some channels missed is sent again to those alone.
    pub fn notify_only(&self, alert: &Alert, only: Option<&[String]>) -> Vec<Delivery> {
        if !self.wants(alert.status) {
            return Vec::new();
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.channels
            .iter()
            .zip(self.channels())
            // A name saved before channels were numbered is the bare description: it stands
            // for every channel described so.
            .filter(|(channel, name)| {
                only.is_none_or(|only| only.contains(name) || only.contains(&channel.describe()))
            })
            .map(|(channel, described)| match channel.send(alert) {
                Ok(()) => {
                    tracing::info!(channel = %described, status = %alert.status, "alert sent");
                    Delivery {
                        channel: described,
                        ok: true,
                        error: None,
                    }
                }
                Err(e) => {
                    let error = crate::error_chain(&e);
                    tracing::warn!(channel = %described, %error, "an alert could not be delivered");
                    Delivery {
                        channel: described,
                        ok: false,
                        error: Some(error),
                    }
                }
            })
            .collect()
    }
}

impl Notifier {
    /// `notify test`: one test message through every channel, whatever `on` says.
    pub fn test(&self, repository: &str, host: &str) -> Vec<Delivery> {
        let alert = Alert::new(Event::Test, None, "test", repository, host).with_error(
            "This is a test of strongbox's alert channels (`strongbox notify test`); nothing failed.",
        );
        self.notify(&alert)
    }
}

/// The failed deliveries of `deliveries`, as one line for a journal.
pub fn undelivered(deliveries: &[Delivery]) -> Option<String> {
    let failed: Vec<String> = deliveries
        .iter()
        .filter(|d| !d.ok)
        .map(|d| format!("{}: {}", d.channel, d.error.as_deref().unwrap_or("failed")))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A channel that records what it is sent, or fails.
    #[derive(Debug, Default)]
    struct Recorder {
        sent: Mutex<Vec<Event>>,
        fail: bool,
    }

    impl Channel for std::sync::Arc<Recorder> {
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn send(&self, alert: &Alert) -> Result<(), Error> {
            if self.fail {
                return Err(Error::WebhookStatus {
                    url: "http://h/***".into(),
                    status: 503,
                });
            }
            self.sent.lock().unwrap().push(alert.status);
            Ok(())
        }
    }

    fn alert(status: Event) -> Alert {
        Alert::new(status, Some("media"), "backup", "repo", "host")
    }

    #[test]
    fn only_wanted_events_are_sent_and_tests_always() {
        let recorder = std::sync::Arc::new(Recorder::default());
        let notifier = Notifier::new(vec![Event::Failure]).with_channel(recorder.clone());
        for event in [Event::Failure, Event::Success, Event::Warning, Event::Test] {
            notifier.notify(&alert(event));
        }
        assert_eq!(
            *recorder.sent.lock().unwrap(),
            [Event::Failure, Event::Test]
        );
        assert_eq!(notifier.attempts(), 2);
    }

    #[test]
    fn a_failed_delivery_is_reported_not_raised() {
        let failing = std::sync::Arc::new(Recorder {
            fail: true,
            ..Recorder::default()
        });
        let notifier = Notifier::new(Event::defaults()).with_channel(failing);
        let deliveries = notifier.notify(&alert(Event::Failure));
        assert_eq!(
            undelivered(&deliveries).as_deref(),
            Some("recorder: webhook http://h/*** answered 503")
        );
    }

    /// Regression: two webhooks on one host (their paths hidden) were one name, so an alert
    /// one of them missed was sent again to both at every health run.
    #[test]
    fn an_alert_is_sent_again_to_the_channel_that_missed_it_alone() {
        let failing = std::sync::Arc::new(Recorder {
            fail: true,
            ..Recorder::default()
        });
        let working = std::sync::Arc::new(Recorder::default());
        let notifier = Notifier::new(Event::defaults())
            .with_channel(working.clone())
            .with_channel(failing);
        assert_eq!(notifier.channels(), ["recorder #1", "recorder #2"]);
        let missed: Vec<String> = notifier
            .notify(&alert(Event::Failure))
            .into_iter()
            .filter(|d| !d.ok)
            .map(|d| d.channel)
            .collect();
        assert_eq!(missed, ["recorder #2"]);
        notifier.notify_only(&alert(Event::Failure), Some(&missed));
        assert_eq!(*working.sent.lock().unwrap(), [Event::Failure]);
    }

    #[test]
    fn no_channel_wants_nothing() {
        assert!(!Notifier::new(Event::defaults()).wants(Event::Failure));
    }
}
