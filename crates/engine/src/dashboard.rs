//! `status --html`: one self-contained page (no external asset, inline SVG) that answers
//! "are our backups fine?" per set, readable on a phone.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use strongbox_manifest::{Snapshot, Stats};
use strongbox_verify::html_escape as escape;

use crate::{Error, HealthCheck, HealthOptions, HealthReport, HealthStatus, Reader, SetStatus};

/// How many snapshots a set's charts show.
const CHART_SNAPSHOTS: usize = 90;

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    /// When it was made.
    pub generated: DateTime<Utc>,
    /// The repository.
    pub repository: String,
    /// Every health check, and the worst state.
    pub health: HealthReport,
    /// Per set: its status and its last snapshots, oldest first.
    pub sets: Vec<SetPanel>,
}

/// One set's panel.
#[derive(Debug, Serialize)]
pub struct SetPanel {
    /// Status from the journal.
    pub status: SetStatus,
    /// The last snapshots (at most 90), oldest first.
    pub snapshots: Vec<Snapshot>,
    /// What prune by the set's policy would forget now.
    pub prunable: Option<usize>,
}

impl Reader {
    /// The dashboard of `sets` (all when empty), health judged by `options`.
    pub fn dashboard(&self, sets: &[String], options: &HealthOptions) -> Result<Dashboard, Error> {
        let mut assessed = self.assess(sets, options)?;
        let health = assessed.report;
        let mut panels = Vec::new();
        for status in &health.sets {
            let mut snapshots = assessed.snapshots.remove(&status.set).unwrap_or_default();
            let prunable = assessed.forgettable.get(&status.set).copied();
            let skip = snapshots.len().saturating_sub(CHART_SNAPSHOTS);
            snapshots.drain(..skip);
            panels.push(SetPanel {
                status: status.clone(),
                snapshots,
                prunable,
            });
        }
        Ok(Dashboard {
            generated: Utc::now(),
            repository: self.repo.location().to_string(),
            health,
            sets: panels,
        })
    }
}

impl Dashboard {
    /// The page of a repository that could not be read: its state unknown, saying why,
    /// instead of the last page's, which may say ok.
    pub fn unknown(repository: &str, why: &str) -> Self {
        Dashboard {
            generated: Utc::now(),
            repository: repository.to_string(),
            health: HealthReport::unknown(why),
            sets: Vec::new(),
        }
    }
}

fn badge(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Ok => "ok",
        HealthStatus::Warning => "warning",
        HealthStatus::Critical => "critical",
        HealthStatus::Unknown => "unknown",
    }
}

/// A check that is not ok, as a list item.
fn problem(body: &mut String, check: &HealthCheck) {
    let _ = write!(
        body,
        "<li class=\"{}\"><b>{}</b> {}</li>",
        badge(check.status),
        escape(&check.name),
        escape(&check.detail)
    );
}

fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A bar chart of `values` (oldest first) as inline SVG, with its last value as a label.
fn chart(title: &str, values: &[f64], last: &str) -> String {
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    let (w, h) = (300.0, 48.0);
    let step = w / values.len().max(1) as f64;
    let mut bars = String::new();
    for (i, v) in values.iter().enumerate() {
        let bar = if max > 0.0 {
            (v / max * (h - 2.0)).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            bars,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\"/>",
            i as f64 * step,
            h - bar,
            (step - 1.0).max(0.5)
        );
    }
    format!(
        "<figure><figcaption>{} <b>{}</b></figcaption><svg viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">{bars}</svg></figure>",
        escape(title),
        escape(last),
        escape(title)
    )
}

impl Dashboard {
    /// The page.
    pub fn to_html(&self) -> String {
        let now = self.generated;
        let mut body = String::new();
        // Worst first: what needs doing is on the first screen.
        let mut panels: Vec<&SetPanel> = self.sets.iter().collect();
        panels.sort_by_key(|p| std::cmp::Reverse(self.set_status(&p.status.set)));
        let repo_checks: Vec<&HealthCheck> = self
            .health
            .checks
            .iter()
            .filter(|c| c.set.is_none() && c.status != HealthStatus::Ok)
            .collect();
        if let Some(worst) = repo_checks.iter().map(|c| c.status).max() {
            let _ = write!(
                body,
                "<section class=\"set {0}\"><h2>repository <span class=\"badge\">{0}</span></h2><ul>",
                badge(worst)
            );
            for c in repo_checks {
                problem(&mut body, c);
            }
            body.push_str("</ul></section>");
        }
        for panel in panels {
            let s = &panel.status;
            let status = self.set_status(&s.set);
            let _ = write!(
                body,
                "<section class=\"set {}\"><h2>{} <span class=\"badge\">{}</span></h2><dl>",
                badge(status),
                escape(&s.set),
                badge(status)
            );
            match &s.last_snapshot {
                Some(last) => {
                    // A bundle stores nothing itself: its members are their own panels.
                    let size = match panel.snapshots.last() {
                        Some(newest) if !newest.members.is_empty() => {
                            format!("{} members", newest.members.len())
                        }
                        _ => human_bytes(last.bytes_stored),
                    };
                    let _ = write!(
                        body,
                        "<dt>last snapshot</dt><dd>{} · {} {} · {size}</dd>",
                        ago(now, last.time),
                        escape(&last.kind),
                        escape(&last.source),
                    );
                }
                None => body.push_str("<dt>last snapshot</dt><dd>none</dd>"),
            }
            match &s.last_verification {
                Some(v) => {
                    let restore = v
                        .restore_secs
                        .map(|r| format!(" · restore {r:.1} s"))
                        .unwrap_or_default();
                    let _ = write!(
                        body,
                        "<dt>last verification</dt><dd>{} {} · {}{restore}</dd>",
                        v.level,
                        if v.ok { "passed" } else { "FAILED" },
                        ago(now, v.time)
                    );
                }
                None => body.push_str("<dt>last verification</dt><dd>never</dd>"),
            }
            let oldest = panel
                .snapshots
                .first()
                .map(|o| ago(now, o.time))
                .unwrap_or_default();
            let prunable = match panel.prunable {
                Some(0) => " · within the keep policy; the oldest expires first".to_string(),
                Some(n) => format!(" · prune would forget {n} now"),
                None => " · no keep policy".to_string(),
            };
            let _ = write!(
                body,
                "<dt>retention</dt><dd>{} kept, {} stored · oldest {oldest}{prunable}</dd></dl>",
                s.snapshots,
                human_bytes(s.stored_bytes)
            );
            let problems: Vec<&HealthCheck> = self
                .health
                .checks
                .iter()
                .filter(|c| {
                    c.set.as_deref() == Some(s.set.as_str()) && c.status != HealthStatus::Ok
                })
                .collect();
            if !problems.is_empty() {
                body.push_str("<ul>");
                for c in problems {
                    problem(&mut body, c);
                }
                body.push_str("</ul>");
            }
            if panel.snapshots.len() > 1 {
                let stored: Vec<f64> = panel
                    .snapshots
                    .iter()
                    .map(|x| x.bytes_stored() as f64)
                    .collect();
                let counts: Vec<f64> = panel.snapshots.iter().map(|x| count(x).1 as f64).collect();
                let secs: Vec<f64> = panel.snapshots.iter().map(|x| x.duration_secs).collect();
                let last = panel.snapshots.last().expect("more than one");
                let (what, n) = count(last);
                body.push_str("<div class=\"charts\">");
                body.push_str(&chart(
                    "stored per snapshot",
                    &stored,
                    &human_bytes(last.bytes_stored()),
                ));
                body.push_str(&chart(what, &counts, &n.to_string()));
                body.push_str(&chart(
                    "backup duration",
                    &secs,
                    &format!("{:.1} s", last.duration_secs),
                ));
                body.push_str("</div>");
            }
            body.push_str("</section>");
        }
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>strongbox: {overall}</title><style>{STYLE}</style></head><body>\
<header class=\"{overall}\"><h1>Backups: {overall}</h1><p>{repo} · {sets} set(s)<br>{generated}</p></header>\
<main>{body}</main></body></html>\n",
            overall = badge(self.health.status),
            repo = escape(&self.repository),
            sets = self.sets.len(),
            generated = now.format("%Y-%m-%d %H:%M UTC"),
        )
    }

    fn set_status(&self, set: &str) -> HealthStatus {
        self.health
            .checks
            .iter()
            .filter(|c| c.set.as_deref() == Some(set))
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Ok)
    }
}

/// What a snapshot counts, and how many: files, rows, or a bundle's members.
fn count(snapshot: &Snapshot) -> (&'static str, u64) {
    match &snapshot.stats {
        Stats::Files(f) => ("files", f.files),
        Stats::Database(d) => ("rows", d.tables.iter().map(|t| t.rows).sum()),
        Stats::Physical(p) => ("bytes", p.bytes_read),
        Stats::Bundle(_) => ("members", snapshot.members.len() as u64),
    }
}

const STYLE: &str = "\
body{margin:0;font:15px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#1d1f23}\
header{padding:14px 16px;color:#fff;background:#2e7d32}header.warning{background:#b26a00}\
header.critical,header.unknown{background:#b3261e}h1{margin:0;font-size:22px}\
header p{margin:4px 0 0;opacity:.9;overflow-wrap:anywhere}\
main{display:grid;align-items:start;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px;padding:12px}\
.set{background:#fff;border-radius:8px;padding:12px 14px;border-left:6px solid #2e7d32}\
.set.warning{border-color:#b26a00}.set.critical,.set.unknown{border-color:#b3261e}\
h2{margin:0 0 8px;font-size:18px;display:flex;justify-content:space-between;align-items:center;overflow-wrap:anywhere}\
.badge{font-size:12px;text-transform:uppercase;padding:2px 8px;border-radius:10px;background:#e8f5e9;color:#2e7d32}\
.warning .badge{background:#fff3e0;color:#b26a00}.critical .badge,.unknown .badge{background:#fdecea;color:#b3261e}\
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0}dt{color:#5f6368}dd{margin:0}\
ul{margin:8px 0 0;padding-left:18px}li.warning{color:#b26a00}li.critical,li.unknown{color:#b3261e}\
.charts{display:grid;gap:6px;margin-top:10px}figure{margin:0}figcaption{font-size:12px;color:#5f6368}\
svg{width:100%;height:40px;fill:#5c6bc0;background:#f7f8fc}";
