//! A verification report as an operator reads it: text for a terminal or a mail, one
//! self-contained HTML page (no external assets) for a browser or a phone.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Report;

/// The totals of a report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Snapshots checked.
    pub total: usize,
    /// Snapshots that passed every check.
    pub verified: usize,
    /// Snapshots with a failed check.
    pub failed: usize,
    /// `verified / total` in percent (100 when nothing was checked).
    pub pass_rate: f64,
}

impl Report {
    /// The totals.
    pub fn summary(&self) -> Summary {
        let total = self.snapshots.len();
        let verified = self.snapshots.iter().filter(|s| s.ok).count();
        Summary {
            total,
            verified,
            failed: total - verified,
            pass_rate: if total == 0 {
                100.0
            } else {
                verified as f64 * 100.0 / total as f64
            },
        }
    }

    /// The report as text: the summary, then every snapshot with every check.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for snapshot in &self.snapshots {
            let restore = snapshot
                .restore_secs
                .map(|s| format!(" (restore {s:.1} s)"))
                .unwrap_or_default();
            let mark = if snapshot.ok { "ok    " } else { "FAILED" };
            let _ = writeln!(text, "{mark} {} {}{restore}", snapshot.set, snapshot.id);
            for check in &snapshot.checks {
                let _ = writeln!(
                    text,
                    "    {:<12} {} {} [{:.2} s]",
                    check.name.to_string(),
                    if check.ok { "ok" } else { "FAILED:" },
                    check.detail,
                    check.duration_secs
                );
            }
        }
        let s = self.summary();
        let _ = write!(
            text,
            "{} snapshot(s) verified at level {}: {} passed, {} failed ({:.0} %)",
            s.total, self.level, s.verified, s.failed, s.pass_rate
        );
        text
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> String {
        let s = self.summary();
        let status = if self.ok { "ok" } else { "failed" };
        let mut rows = String::new();
        // Failures first: on a phone, what needs doing is on the first screen.
        let mut snapshots: Vec<_> = self.snapshots.iter().collect();
        snapshots.sort_by_key(|s| s.ok);
        for snapshot in snapshots {
            let restore = snapshot
                .restore_secs
                .map(|s| format!("restore {}", seconds(s)))
                .unwrap_or_default();
            let _ = write!(
                rows,
                "<section class=\"{}\"><h2><span class=\"mark\">{}</span> {} <code>{}</code> <small>{}</small></h2><table>",
                if snapshot.ok { "ok" } else { "failed" },
                if snapshot.ok { "✔" } else { "✘" },
                escape(&snapshot.set),
                escape(&snapshot.id),
                restore
            );
            for check in &snapshot.checks {
                let _ = write!(
                    rows,
                    "<tr class=\"{}\"><th>{}{}</th><td>{}</td><td class=\"t\">{}</td></tr>",
                    if check.ok { "ok" } else { "failed" },
                    if check.ok { "" } else { "✘&nbsp;" },
                    check.name,
                    escape(&check.detail),
                    seconds(check.duration_secs).replace(' ', "&nbsp;")
                );
            }
            rows.push_str("</table></section>");
        }
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>strongbox verification: {status}</title><style>{STYLE}</style></head><body>\
<header class=\"{status}\"><h1>Verification {status}</h1>\
<p>level <b>{level}</b> · {total} snapshot(s) · {verified} passed · {failed} failed · \
pass rate {rate:.0} %</p></header>{rows}</body></html>\n",
            level = self.level,
            total = s.total,
            verified = s.verified,
            failed = s.failed,
            rate = s.pass_rate,
        )
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:60em;padding:.5em;color:#222}\
header{padding:.5em 1em;border-radius:.4em;margin-bottom:1em}header.ok{background:#e3f6e3}\
header.failed{background:#fbe3e3}h1{margin:.2em 0;font-size:1.4em}h2{font-size:1.05em;margin:.3em 0}\
section{border:1px solid #ddd;border-radius:.4em;padding:.4em .8em;margin:.6em 0}\
section.failed{border-color:#d44}.ok .mark{color:#280}.failed .mark{color:#c22}\
table{border-collapse:collapse;width:100%}th{text-align:left;padding-right:.8em;white-space:nowrap;vertical-align:top;width:1%}\
td{padding:.15em 0;word-break:break-word;vertical-align:top}td.t{text-align:right;white-space:nowrap;color:#666;width:5em;padding-left:.6em}\
tr.failed th,tr.failed td{color:#a00}code{font-size:.9em}small{color:#666;font-weight:normal}\
@media (max-width:30em){body{font-size:14px}td.t{width:auto;font-size:.85em}}";

/// `0.27 s`; what the clock cannot tell apart from nothing, `<0.01 s`.
fn seconds(secs: f64) -> String {
    if secs < 0.005 {
        "<0.01 s".to_string()
    } else {
        format!("{secs:.2} s")
    }
}

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Check, CheckName, SnapshotReport, VerifyLevel};

    fn snapshot(ok: bool) -> SnapshotReport {
        SnapshotReport {
            id: "20250101T000000Z-000001".into(),
            set: "db<1>".into(),
            ok,
            checks: vec![Check::new(
                CheckName::Restore,
                if ok {
                    Ok("3 tables".into())
                } else {
                    Err("table a has 1 rows, the snapshot 2".into())
                },
            )],
            restore_secs: Some(1.5),
        }
    }

    #[test]
    fn reports_sum_up_and_render_every_check_escaped() {
        let cases = [
            (vec![], (0, 0, 0, 100.0)),
            (vec![snapshot(true)], (1, 1, 0, 100.0)),
            (vec![snapshot(true), snapshot(false)], (2, 1, 1, 50.0)),
        ];
        for (snapshots, (total, verified, failed, rate)) in cases {
            let report = Report::new(VerifyLevel::Restore, snapshots);
            let s = report.summary();
            assert_eq!(
                (s.total, s.verified, s.failed, s.pass_rate),
                (total, verified, failed, rate)
            );
            let text = report.to_text();
            let html = report.to_html();
            assert!(
                text.contains(&format!("{verified} passed, {failed} failed")),
                "{text}"
            );
            assert!(!html.contains("db<1>") && !html.contains("http"), "{html}");
            if failed > 0 {
                assert!(
                    text.contains("table a has 1 rows, the snapshot 2"),
                    "{text}"
                );
                assert!(
                    html.contains("table a has 1 rows, the snapshot 2"),
                    "{html}"
                );
                assert!(html.contains("Verification failed"), "{html}");
            }
        }
    }
}
