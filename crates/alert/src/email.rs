//! Mail through an SMTP server: plain, STARTTLS or TLS, with optional login.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::{Alert, Channel, Error};

/// How to reach the SMTP server and whom to write to.
#[derive(Clone)]
pub struct EmailSettings {
    /// `smtp://host[:port]` (port 25, or 587 with STARTTLS) or `smtps://host[:port]` (TLS
    /// from the first byte, port 465).
    pub server: String,
    /// Upgrade an `smtp://` connection with STARTTLS, and refuse a server that cannot.
    pub starttls: bool,
    /// Login name.
    pub username: Option<String>,
    /// Password; never shown.
    pub password: Option<String>,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// A PEM file of extra CA certificates to trust (a private mail relay).
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the server.
    pub timeout: Duration,
}

impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSettings")
            .field("server", &self.server)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The mail channel.
pub struct Email {
    transport: SmtpTransport,
    server: String,
    timeout: Duration,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("server", &self.server)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// A server URL as errors show it: a login written into it is hidden.
fn without_login(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn mailbox(address: &str) -> Result<Mailbox, Error> {
    address.parse().map_err(|source| Error::Address {
        address: address.to_string(),
        source,
    })
}

impl Email {
    /// A channel sending to `settings.to`; checks the addresses and the server URL, without
    /// connecting.
    pub fn new(settings: EmailSettings) -> Result<Self, Error> {
        let bad = |reason| Error::SmtpUrl {
            url: without_login(&settings.server),
            reason,
        };
        let (wrapped, rest) = match settings.server.split_once("://") {
            Some(("smtp", rest)) => (false, rest),
            Some(("smtps", rest)) => (true, rest),
            _ => return Err(bad("the scheme must be smtp:// or smtps://")),
        };
        if rest.contains('@') {
            return Err(bad(
                "put the login in username and password, not in the URL",
            ));
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.is_empty() {
            return Err(bad("expected smtp://host[:port]"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            None if wrapped => (authority, 465),
            None if settings.starttls => (authority, 587),
            None => (authority, 25),
        };
        if wrapped && settings.starttls {
            return Err(bad("smtps:// is TLS already; starttls applies to smtp://"));
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        if settings.username.is_some() && !wrapped && !settings.starttls && !loopback {
            return Err(bad(
                "a login over plain smtp:// sends the password in clear: set starttls = true or use smtps://",
            ));
        }
        let tls = if wrapped || settings.starttls {
            let mut parameters = TlsParameters::builder(host.to_string());
            if let Some(path) = &settings.ca_file {
                let ca_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::CaFile {
                    path: path.clone(),
                    source,
                };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.into()))?;
                let certificate = Certificate::from_pem(&pem).map_err(|e| ca_error(e.into()))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters.build().map_err(|source| Error::Smtp {
                server: settings.server.clone(),
                source,
            })?;
            if wrapped {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        } else {
            Tls::None
        };
        let mut builder = SmtpTransport::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some(username) = &settings.username {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                settings.password.clone().unwrap_or_default(),
            ));
        }
        let to = settings
            .to
            .iter()
            .map(|a| mailbox(a))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(Error::SmtpUrl {
                url: without_login(&settings.server),
                reason: "no recipients: set `to`",
            });
        }
        Ok(Email {
            transport: builder.build(),
            server: format!("{}://{host}:{port}", if wrapped { "smtps" } else { "smtp" }),
            timeout: settings.timeout,
            from: mailbox(&settings.from)?,
            to,
        })
    }
}

impl Channel for Email {
    fn describe(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        format!("email via {} to {}", self.server, to.join(", "))
    }

    fn send(&self, alert: &Alert) -> Result<(), Error> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(alert.text())
            .map_err(|source| Error::Message {
                server: self.server.clone(),
                source,
            })?;
        self.transport
            .send(&message)
            .map_err(|source| self.failed(source))?;
        Ok(())
    }
}

impl Email {
    /// A stalled server shows as an I/O error, "Resource temporarily unavailable" (the
    /// socket's timeout): it is said as the timeout it is.
    fn failed(&self, source: lettre::transport::smtp::Error) -> Error {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
        while let Some(error) = cause {
            let timed_out = error.downcast_ref::<std::io::Error>().is_some_and(|e| {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            });
            if timed_out {
                return Error::SmtpTimeout {
                    server: self.server.clone(),
                    timeout: self.timeout,
                    source,
                };
            }
            cause = error.source();
        }
        Error::Smtp {
            server: self.server.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn settings(server: &str, starttls: bool) -> EmailSettings {
        EmailSettings {
            server: server.to_string(),
            starttls,
            username: Some("u".into()),
            password: Some("hunter22".into()),
            from: "strongbox@web1.example".into(),
            to: vec!["ops@example.com".into()],
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[rstest]
    #[case(
        "smtp://localhost",
        false,
        "email via smtp://localhost:25 to ops@example.com"
    )]
    #[case("smtp://mail", true, "email via smtp://mail:587 to ops@example.com")]
    #[case("smtps://mail", false, "email via smtps://mail:465 to ops@example.com")]
    #[case(
        "smtp://mail:2525/",
        true,
        "email via smtp://mail:2525 to ops@example.com"
    )]
    fn servers(#[case] server: &str, #[case] starttls: bool, #[case] described: &str) {
        assert_eq!(
            Email::new(settings(server, starttls)).unwrap().describe(),
            described
        );
    }

    #[rstest]
    #[case("mail:25", false, "the scheme must be")]
    #[case("http://mail", false, "the scheme must be")]
    #[case("smtp://u:p@mail", false, "not in the URL")]
    #[case("smtp://mail", false, "password in clear")]
    #[case("smtp://mail:port", false, "not a number")]
    #[case("smtps://mail", true, "TLS already")]
    #[case("smtp://", false, "expected smtp://host")]
    fn bad_servers(#[case] server: &str, #[case] starttls: bool, #[case] reason: &str) {
        let error = Email::new(settings(server, starttls))
            .unwrap_err()
            .to_string();
        assert!(error.contains(reason), "{error}");
        assert!(!error.contains("u:p"), "the login is hidden: {error}");
    }

    #[test]
    fn settings_never_show_the_password() {
        let shown = format!("{:?}", settings("smtp://mail", true));
        assert!(
            !shown.contains("hunter22") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out_saying_so() {
        // The kernel completes the connection; nothing ever reads or answers it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut quiet = settings(&format!("smtp://127.0.0.1:{port}"), false);
        quiet.username = None;
        quiet.timeout = Duration::from_millis(300);
        let alert = crate::Alert::new(crate::Event::Test, None, "test", "repo", "web1");
        let error = Email::new(quiet).unwrap().send(&alert).unwrap_err();
        assert!(matches!(error, Error::SmtpTimeout { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("sending mail through smtp://127.0.0.1:{port}: no answer within 0.3 s")
        );
        drop(listener);
    }

    #[test]
    fn bad_address_is_named() {
        let mut bad = settings("smtp://localhost", false);
        bad.to = vec!["not an address".into()];
        let error = Email::new(bad).unwrap_err().to_string();
        assert!(error.contains("\"not an address\""), "{error}");
    }
}
