//! Alerts through the run's real SMTP servers (plain, STARTTLS, TLS) and HTTP receiver:
//! what a failure sends, recovery, health de-duplication with a daily reminder, failing
//! channels that never change an exit status, and `notify test`.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use strongbox_test_support::{unique, Receivers};

use crate::harness::{noise, write, Env};

/// A repository, a configuration alerting one fresh mailbox and one fresh webhook path, and
/// the receivers.
struct Alerting {
    env: Env,
    config: PathBuf,
    rx: Receivers,
    mailbox: String,
    hook: String,
}

impl Alerting {
    /// `email` is the inline table's settings before `from`/`to`; `alerts` more `[alerts]`
    /// keys; `sets` the sets' tables.
    fn new(email: &str, hook_format: &str, alerts: &str, sets: &str) -> Option<Self> {
        let rx = Receivers::get()?;
        let env = Env::new();
        let mailbox = format!("{}@example.com", unique("ops"));
        let hook = format!("/hooks/{}/TOKEN", unique("h"));
        let config = env.path("strongbox.toml");
        let email = email
            .replace("{smtp}", &rx.smtp)
            .replace("{starttls}", &rx.smtp_starttls)
            .replace("{tls}", &rx.smtp_tls)
            .replace("{user}", &rx.user)
            .replace("{ca}", &rx.ca.display().to_string());
        let text = format!(
            r#"[alerts]
{alerts}
email = {{ {email} from = "strongbox@web1.example", to = ["{mailbox}"] }}
webhooks = [ {{ url = "{webhook}{hook}", format = "{hook_format}" }} ]
{sets}
"#,
            webhook = rx.webhook,
            sets = sets.replace("{dir}", &env.path("").display().to_string()),
        );
        std::fs::write(&config, text).unwrap();
        Some(Alerting {
            env,
            config,
            rx,
            mailbox,
            hook,
        })
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.config.display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        self.env
            .cmd(&all)
            .env("SMTP_PASSWORD", &self.rx.password)
            .output()
            .unwrap()
    }

    fn mails(&self) -> Vec<String> {
        self.rx.mails(&self.mailbox)
    }

    fn posts(&self) -> Vec<Value> {
        self.rx
            .posts(&self.hook)
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect()
    }

    /// The posts about `set` (health also reports the repository's disk, which is this
    /// machine's business).
    fn posts_about(&self, set: &str) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| p["set"] == set)
            .collect()
    }
}

const PLAIN: &str = r#"smtp = "smtp://{smtp}","#;
const MEDIA: &str = "[sets.media]\nsource = \"files\"\npath = \"{dir}/media\"\n";

fn subject(mail: &str) -> &str {
    mail.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_else(|| panic!("no subject in {mail}"))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn notify_test_reaches_plain_starttls_and_tls_servers_without_showing_the_password() {
    let servers = [
        (PLAIN, "smtp://"),
        (
            r#"smtp = "smtp://{starttls}", starttls = true, username = "{user}", password = "${SMTP_PASSWORD}", ca_file = "{ca}","#,
            "smtp://localhost",
        ),
        (
            r#"smtp = "smtps://{tls}", username = "{user}", password = "${SMTP_PASSWORD}", ca_file = "{ca}","#,
            "smtps://localhost",
        ),
    ];
    for (email, shown) in servers {
        let Some(a) = Alerting::new(email, "slack", "", "") else {
            return;
        };
        let out = a.run(&["notify", "test", "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "{report:#}");
        let channels = report["deliveries"].to_string();
        assert!(channels.contains(shown), "{channels}");
        assert!(
            !channels.contains("TOKEN"),
            "the webhook path is a secret: {channels}"
        );
        let mails = a.mails();
        assert_eq!(mails.len(), 1, "one test mail");
        assert!(subject(&mails[0]).contains("test message"), "{}", mails[0]);
        assert!(!mails[0].contains(&a.rx.password));
        let posts = a.posts();
        assert_eq!(posts.len(), 1, "one test post");
        assert!(
            posts[0]["text"].as_str().unwrap().contains("test message"),
            "{posts:?}"
        );
        assert!(!stderr(&out).contains(&a.rx.password));
    }
}

#[test]
fn notify_test_reports_each_failing_channel_and_exits_1() {
    let Some(a) = Alerting::new(PLAIN, "json", "", "") else {
        return;
    };
    // A recipient the server refuses, and a webhook answering 503.
    let config = std::fs::read_to_string(&a.config)
        .unwrap()
        .replace(&a.mailbox, "reject-me@example.com")
        .replace("/hooks/", "/status/503/");
    std::fs::write(&a.config, config).unwrap();
    let out = a.run(&["notify", "test"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED  email via smtp://") && text.contains("550"),
        "{text}"
    );
    assert!(
        text.contains("answered 503") && !text.contains("TOKEN"),
        "{text}"
    );
}

#[test]
fn a_failed_backup_mails_and_posts_its_error_and_a_fixed_one_sends_a_recovery() {
    let Some(a) = Alerting::new(PLAIN, "json", "", MEDIA) else {
        return;
    };
    // The media directory does not exist yet.
    let out = a.run(&["backup", "media"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let mails = a.mails();
    assert_eq!(mails.len(), 1, "one failure mail: {mails:?}");
    assert!(
        subject(&mails[0]).contains("backup of media FAILED"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("media"), "{}", mails[0]);
    let posts = a.posts();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post["set"], "media");
    assert_eq!(post["operation"], "backup");
    assert_eq!(post["status"], "failure");
    assert!(post["error"].as_str().unwrap().contains("media"), "{post}");
    assert!(
        post["host"].is_string() && post["time"].is_string(),
        "{post}"
    );
    assert!(post.get("snapshot").is_some(), "{post}");

    write(&a.env.path("media/a.bin"), &noise(1, 1000));
    let out = a.run(&["backup", "media"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let posts = a.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1]["status"], "recovery");
    assert!(posts[1]["snapshot"].is_string(), "{}", posts[1]);
    assert!(subject(&a.mails()[1]).contains("backup of media recovered"));

    // Success is not in the default `on`: a third good backup is silent.
    assert_eq!(code(&a.run(&["backup", "media"])), 0);
    assert_eq!(a.posts().len(), 2);
}

#[test]
fn a_repository_that_cannot_be_opened_still_alerts() {
    let Some(a) = Alerting::new(PLAIN, "slack", "", MEDIA) else {
        return;
    };
    write(&a.env.path("media/a.bin"), b"x");
    // The repository's path is a file: no repository can be opened or made there.
    write(&PathBuf::from(&a.env.repo), b"x");
    let out = a.run(&["backup", "media"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let posts = a.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let text = posts[0]["text"].as_str().unwrap();
    assert!(
        text.contains("backup of media FAILED") && text.contains(&a.env.repo),
        "{text}"
    );
}

#[test]
fn undeliverable_alerts_are_journalled_and_never_change_the_exit_status() {
    let Some(a) = Alerting::new(PLAIN, "json", "on = [\"failure\", \"success\"]", MEDIA) else {
        return;
    };
    let config = std::fs::read_to_string(&a.config)
        .unwrap()
        .replace(&a.mailbox, "reject-ops@example.com")
        .replace("/hooks/", "/status/500/");
    std::fs::write(&a.config, config).unwrap();
    write(&a.env.path("media/a.bin"), b"x");
    let out = a.run(&["backup", "media", "--json"]);
    assert_eq!(code(&out), 0, "a good backup stays good: {}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be delivered"),
        "{}",
        stderr(&out)
    );
    let status = a.run(&["status", "media", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let alert = &status[0]["last_runs"]["alert"];
    assert_eq!(alert["status"], "failed", "{status:#}");
    let error = alert["error"].as_str().unwrap();
    assert!(
        error.contains("the success alert of backup was not delivered"),
        "{error}"
    );
    assert!(
        error.contains("550") && error.contains("answered 500"),
        "{error}"
    );
    assert!(!error.contains("TOKEN"), "{error}");

    // A failing backup with failing channels still exits as the backup failed.
    std::fs::remove_dir_all(a.env.path("media")).unwrap();
    assert_eq!(code(&a.run(&["backup", "media"])), 1);
}

#[test]
fn health_alerts_once_per_change_reminds_after_a_day_and_sends_a_recovery() {
    let Some(a) = Alerting::new(PLAIN, "json", "", MEDIA) else {
        return;
    };
    let health = || code(&a.run(&["health", "--max-disk-usage", "100"]));
    assert_eq!(code(&a.run(&["init"])), 0);
    // Configured, never backed up: critical.
    assert_eq!(health(), 2);
    assert_eq!(health(), 2);
    let posts = a.posts_about("media");
    assert_eq!(posts.len(), 1, "one alert for one change: {posts:?}");
    assert_eq!(posts[0]["operation"], "health");
    assert_eq!(posts[0]["status"], "failure");
    assert_eq!(posts[0]["set"], "media");
    assert!(
        posts[0]["error"].as_str().unwrap().contains("critical"),
        "{}",
        posts[0]
    );

    // A day later the same state is sent again, as a reminder.
    let state_path = PathBuf::from(&a.env.repo).join("alerts/health.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let day_ago = (chrono::Utc::now() - chrono::Duration::hours(25)).to_rfc3339();
    state["scopes"]["media"]["sent"] = Value::String(day_ago);
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    assert_eq!(health(), 2);
    let posts = a.posts_about("media");
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1]["reminder"], true);
    let mails = a.mails();
    assert!(
        mails
            .iter()
            .any(|m| subject(m).contains("still: health of media")),
        "{mails:?}"
    );

    write(&a.env.path("media/a.bin"), b"x");
    assert_eq!(code(&a.run(&["backup", "media"])), 0);
    assert_eq!(health(), 0);
    assert_eq!(health(), 0);
    let posts = a.posts_about("media");
    // The recovery of the backup run is not sent (the run before it did not fail); the
    // health recovery is, once.
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(posts[2]["status"], "recovery");
    assert_eq!(posts[2]["operation"], "health");
}

/// The mail went out and the webhook answered 500: the webhook never got the critical
/// alert, since the state counted as sent.
#[test]
fn a_health_alert_one_channel_missed_is_sent_to_it_alone_next_time() {
    let Some(a) = Alerting::new(PLAIN, "json", "", MEDIA) else {
        return;
    };
    let health = || code(&a.run(&["health", "--max-disk-usage", "100"]));
    let config = std::fs::read_to_string(&a.config).unwrap();
    std::fs::write(&a.config, config.replace("/hooks/", "/status/500/")).unwrap();
    assert_eq!(code(&a.run(&["init"])), 0);
    let about_media = || {
        a.mails()
            .iter()
            .filter(|m| subject(m).contains("health of media"))
            .count()
    };
    assert_eq!(health(), 2);
    assert_eq!(about_media(), 1);
    assert!(a.posts_about("media").is_empty());

    std::fs::write(&a.config, config).unwrap();
    assert_eq!(health(), 2);
    let posts = a.posts_about("media");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["status"], "failure");
    assert_eq!(about_media(), 1, "the mail is not sent twice");
    assert_eq!(health(), 2);
    assert_eq!(
        a.posts_about("media").len(),
        1,
        "once it is through, no more"
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn unreachable_channels_fail_notify_test_one_line_each_and_none_configured_is_an_error() {
    let env = Env::new();
    let config = env.path("strongbox.toml");
    std::fs::write(&config, "[alerts]\non = [\"failure\"]\n").unwrap();
    let config_arg = config.display().to_string();
    let stderr = env.fails(&["--config", &config_arg, "notify", "test"], 1);
    assert!(
        stderr.contains("no alert channel is configured"),
        "{stderr}"
    );

    let (smtp, http) = (closed_port(), closed_port());
    std::fs::write(
        &config,
        format!(
            "[alerts]\nemail = {{ smtp = \"smtp://127.0.0.1:{smtp}\", from = \"a@b.example\", to = [\"c@d.example\"] }}\n\
             webhooks = [ {{ url = \"http://127.0.0.1:{http}/hook/TOKEN\" }} ]\n"
        ),
    )
    .unwrap();
    let out = env.run(&["--config", &config_arg, "notify", "test"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert_eq!(failed.len(), 2, "{text}");
    assert!(
        failed[0].contains(&format!("smtp://127.0.0.1:{smtp}")),
        "{text}"
    );
    assert!(
        failed[1].contains(&format!("127.0.0.1:{http}")) && !text.contains("TOKEN"),
        "{text}"
    );
}
