//! Human-readable output: tables, summaries and sizes. JSON output is serde's.

use std::collections::HashMap;

use serde::Serialize;

use strongbox_engine::{
    human_bytes, HealthReport, HealthStatus, PruneReport, RestoreDetail, RestoreOutcome,
    RestorePlan, SetStatus, TimelineWindow, Verification,
};
use strongbox_manifest::{FileEntry, FileType, Snapshot, Stats};
use strongbox_storage::KeyInfo;

/// One row of `ls`, in the JSON shape scripts rely on.
#[derive(Serialize)]
pub struct LsRow<'a> {
    pub path: &'a str,
    #[serde(rename = "type")]
    pub kind: FileType,
    pub size: u64,
    pub mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    pub mtime: i64,
    pub sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
}

impl<'a> From<&'a FileEntry> for LsRow<'a> {
    fn from(e: &'a FileEntry) -> Self {
        LsRow {
            path: &e.path,
            kind: e.kind,
            size: e.size,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            sha256: e.sha256.as_deref(),
            target: e.target.as_deref(),
        }
    }
}

/// An entry streamed as its `ls` row.
pub struct LsEntry(pub FileEntry);

impl Serialize for LsEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LsRow::from(&self.0).serialize(serializer)
    }
}

/// One line of `ls`: type and mode, size, modification time, path (and a link's target).
pub fn ls_line(r: &LsRow<'_>) -> String {
    let kind = match r.kind {
        FileType::Dir => 'd',
        FileType::Symlink => 'l',
        FileType::File => '-',
    };
    let time = chrono::DateTime::from_timestamp_nanos(r.mtime).format("%Y-%m-%d %H:%M:%S");
    let link = r
        .target
        .map(|t| format!(" -> {}", printable(t)))
        .unwrap_or_default();
    format!(
        "{kind}{:04o} {:>12} {time} {}{link}",
        r.mode,
        r.size,
        printable(r.path)
    )
}

/// A name as one line of a terminal: one with control characters (a newline would split
/// the line, an escape sequence would drive the terminal) is quoted with them escaped, and
/// so is one that begins with a quote, which would pass for a quoted one (`"a\nb"` named
/// so and `a`, newline, `b` printed alike). `--json` has the exact bytes.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    match name.starts_with('"') || name.chars().any(char::is_control) {
        true => format!("{name:?}").into(),
        false => name.into(),
    }
}

/// Tags as the snapshot table lists them, joined by `,`: one that is empty or holds a `,`
/// or a control character (written before tags were checked, or by another tool) is
/// quoted, so that it reads as one tag and keeps to its row.
fn tag_list(tags: &[String]) -> String {
    tags.iter()
        .map(|t| match t.is_empty() || t.contains(',') {
            true => format!("{t:?}").into(),
            false => printable(t),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` with every control character but newlines and tabs escaped (`\u{1b}`): what
/// strongbox prints about a repository (tags, a journal's errors) is whatever its writer
/// put there, and an escape sequence in it would clear the screen or retitle the terminal.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| match unsafe_char(c) {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

pub fn snapshot_table(snapshots: &[Snapshot], verified: &HashMap<String, Verification>) -> String {
    if snapshots.is_empty() {
        return "no snapshots".to_string();
    }
    let rows = snapshots.iter().map(|s| {
        let entries = match &s.stats {
            Stats::Files(f) => f.files + f.dirs + f.symlinks,
            Stats::Database(d) => d.tables.len() as u64,
            Stats::Physical(_) => 1,
            Stats::Bundle(_) => s.members.len() as u64,
        };
        let last = verified.get(s.id.as_str()).map_or_else(
            || "-".to_string(),
            |v| {
                let restore = v
                    .restore_secs
                    .map(|r| format!(" {r:.1}s"))
                    .unwrap_or_default();
                format!(
                    "{} {}{restore} {}",
                    v.level,
                    if v.ok { "ok" } else { "FAILED" },
                    v.time.format("%m-%d %H:%M")
                )
            },
        );
        vec![
            s.id.to_string(),
            s.set.clone(),
            s.kind.as_str().to_string(),
            s.source.as_str().to_string(),
            s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            entries.to_string(),
            human_bytes(s.bytes_stored()),
            last,
            tag_list(&s.tags),
        ]
    });
    let header = [
        "id",
        "set",
        "kind",
        "source",
        "time",
        "entries",
        "stored",
        "last verified",
        "tags",
    ];
    table(&header, &[5, 6], rows.collect())
}

/// Columns as wide as their widest cell, two spaces apart; `right` (column numbers)
/// aligned right; no line ends in spaces.
fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(&rows).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    all.iter()
        .map(|row| {
            let cells = row.iter().enumerate().map(|(c, cell)| {
                if right.contains(&c) {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            });
            // The last column padded too, then the padding trimmed.
            cells.collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key list`: one key file a line, its holder's recipient last (`-` for a passphrase).
pub fn key_table(keys: &[KeyInfo]) -> String {
    let rows = keys.iter().map(|k| {
        vec![
            k.id.clone(),
            k.kind.to_string(),
            k.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            k.recipient.clone().unwrap_or_else(|| "-".to_string()),
        ]
    });
    table(&["id", "kind", "created", "recipient"], &[], rows.collect())
}

pub fn summary(s: &Snapshot) -> String {
    let parent = s
        .parent
        .as_ref()
        .map(|p| format!(" of {p}"))
        .unwrap_or_default();
    match &s.stats {
        Stats::Files(f) => {
            let secs = s.duration_secs.max(0.001);
            format!(
                "snapshot {} ({}{parent}) of set {}: {} files, {} dirs, {} symlinks; {} new, {} changed, {} unchanged, {} deleted; read {}, stored {} in {:.1} s ({}/s)",
                s.id,
                s.kind.as_str(),
                s.set,
                f.files,
                f.dirs,
                f.symlinks,
                f.new,
                f.changed,
                f.unchanged,
                f.deleted,
                human_bytes(f.bytes_read),
                human_bytes(f.bytes_stored),
                s.duration_secs,
                human_bytes((f.bytes_read as f64 / secs) as u64)
            )
        }
        Stats::Database(d) => format!(
            "snapshot {} of set {}: {} tables, dumped {}, stored {} in {:.1} s",
            s.id,
            s.set,
            d.tables.len(),
            human_bytes(d.bytes_dumped),
            human_bytes(d.bytes_stored),
            s.duration_secs
        ),
        Stats::Physical(p) => format!(
            "base backup {} of set {}: {} ({}), timeline {}, WAL {} to {} (LSN {} to {}), read {}, stored {} in {:.1} s",
            s.id,
            s.set,
            p.server_version,
            p.system_identifier,
            p.timeline,
            p.start_segment,
            p.stop_segment,
            p.start_lsn,
            p.stop_lsn,
            human_bytes(p.bytes_read),
            human_bytes(p.bytes_stored),
            s.duration_secs
        ),
        Stats::Bundle(b) => {
            let members: Vec<String> = s
                .members
                .iter()
                .map(|(set, id)| format!("{set} {id}"))
                .collect();
            let mut text = format!(
                "bundle {} of set {}: {} in {:.1} s",
                s.id,
                s.set,
                members.join(", "),
                s.duration_secs
            );
            if let Some(point) = &s.restore_point {
                text.push_str(&format!(
                    "; restore point {} at {} on {}",
                    point.name, point.lsn, point.member
                ));
            }
            if let Some(r) = &b.references {
                text.push_str(&format!(
                    "\nreferences: {} checked, {} missing, {} orphan file(s), in {} ms",
                    r.checked, r.missing_count, r.orphans_count, r.millis
                ));
            }
            text
        }
    }
}

pub fn plan_text(plan: &RestorePlan, target: &str) -> String {
    let mut text = format!(
        "would restore snapshot {} into {target}: {} files, {} dirs, {} symlinks, {}",
        plan.snapshot,
        plan.files,
        plan.dirs,
        plan.symlinks,
        human_bytes(plan.bytes)
    );
    for holder in &plan.holders {
        text.push_str(&format!(
            "\n  from archive of {}: {} entries, {}",
            holder.id,
            holder.entries,
            human_bytes(holder.bytes)
        ));
    }
    text
}

pub fn restore_text(outcome: &RestoreOutcome) -> String {
    let mut text = match &outcome.detail {
        RestoreDetail::Plan(plan) => format!(
            "restored {} into {}: {} files, {} dirs, {} symlinks, {} in {:.1} s; every file's SHA-256 checked",
            outcome.snapshot,
            outcome.target,
            plan.files,
            plan.dirs,
            plan.symlinks,
            human_bytes(plan.bytes),
            outcome.duration_secs
        ),
        RestoreDetail::Tables(tables) => format!(
            "restored {} into {}: {} tables, {} rows, counts match the snapshot; {:.1} s",
            outcome.snapshot,
            outcome.target,
            tables.len(),
            tables.iter().map(|t| t.rows).sum::<u64>(),
            outcome.duration_secs
        ),
        RestoreDetail::Recovery(r) => format!(
            "restored {} into {} ({}, {:.1} s); it recovers to {} when the server starts \
             (recovery.signal and restore_command written to postgresql.auto.conf)\n{}",
            outcome.snapshot,
            outcome.target,
            human_bytes(r.bytes),
            outcome.duration_secs,
            r.target,
            r.window
        ),
    };
    if let Some(safety) = &outcome.safety_snapshot {
        text.push_str(&format!(
            "\nthe target's former content is snapshot {safety}"
        ));
    }
    if let Some(previous) = &outcome.previous {
        text.push_str(&format!(
            "\nprevious content kept at {}",
            previous.display()
        ));
    }
    text
}

pub fn prune_text(report: &PruneReport) -> String {
    let mut lines = Vec::new();
    for kept in &report.keep {
        lines.push(format!(
            "keep   {} {:<12} {}",
            kept.id,
            kept.set,
            kept.reasons.join(", ")
        ));
    }
    for forgotten in &report.forget {
        lines.push(format!("forget {} {}", forgotten.id, forgotten.set));
    }
    for key in &report.retained_for_chains {
        lines.push(format!("retain {key} (a kept snapshot draws from it)"));
    }
    for wal in &report.wal {
        lines.push(format!(
            "wal    {} {} .. {}: {} files, {} (before the oldest kept base backup)",
            wal.set,
            wal.first,
            wal.last,
            wal.files,
            human_bytes(wal.bytes)
        ));
    }
    let (kept, forget, deleted, freed) = (
        report.keep.len(),
        report.forget.len(),
        report.deleted_objects,
        human_bytes(report.freed_bytes),
    );
    lines.push(if report.dry_run {
        format!(
            "dry run, nothing changed: {kept} to keep, {forget} to forget, {deleted} objects to delete, {freed} to free"
        )
    } else {
        format!("{kept} kept, {forget} forgotten, {deleted} objects deleted, {freed} freed")
    });
    lines.join("\n")
}

pub fn status_text(statuses: &[SetStatus]) -> String {
    if statuses.is_empty() {
        return "no sets".to_string();
    }
    let mut text = Vec::new();
    for s in statuses {
        let last = s.last_snapshot.as_ref().map_or_else(
            || "no snapshot".to_string(),
            |l| {
                format!(
                    "last {} ({} {}) at {}, {}",
                    l.id,
                    l.kind,
                    l.source,
                    l.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    human_bytes(l.bytes_stored)
                )
            },
        );
        text.push(format!(
            "{}: {} snapshot(s), {} stored; {last}",
            s.set,
            s.snapshots,
            human_bytes(s.stored_bytes)
        ));
        for (operation, run) in &s.last_runs {
            let duration = run
                .duration_secs
                .map(|d| format!(" in {d:.1} s"))
                .unwrap_or_default();
            let error = run
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            text.push(format!(
                "  {operation:<8} {:<10} {}{duration}{error}",
                run.status.as_str(),
                run.started.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if !s.damaged_records.is_empty() {
            text.push(format!(
                "  DAMAGED record(s), unreadable: {} (`strongbox health` says why)",
                s.damaged_records.join(", ")
            ));
        }
        if let Some(v) = &s.last_verification {
            let restore = v
                .restore_secs
                .map(|r| format!(", restore {r:.1} s"))
                .unwrap_or_default();
            text.push(format!(
                "  last verification: {} {} of {} at {}{restore}",
                v.level,
                if v.ok { "ok" } else { "FAILED" },
                v.snapshot,
                v.time.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        let oldest = s.objects.oldest_read.map_or_else(
            || "none read yet".to_string(),
            |t| format!("the oldest read {}", t.format("%Y-%m-%d %H:%M UTC")),
        );
        text.push(format!(
            "  data: {} object(s), {} never read by a verification, {oldest}",
            s.objects.total, s.objects.never_read
        ));
    }
    text.join("\n")
}

pub fn health_text(report: &HealthReport) -> String {
    let mut lines: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status != HealthStatus::Ok)
        .map(|c| {
            format!(
                "{:<8} {} {}: {}",
                c.status.to_string().to_uppercase(),
                c.set.as_deref().unwrap_or("(repository)"),
                c.name,
                c.detail
            )
        })
        .collect();
    let ok = report.checks.len() - lines.len();
    lines.push(format!(
        "{}: {} check(s), {ok} ok",
        report.status.to_string().to_uppercase(),
        report.checks.len()
    ));
    lines.join("\n")
}

/// One line per channel: `ok` or `FAILED` and why.
pub fn deliveries_text(deliveries: &[strongbox_alert::Delivery]) -> String {
    deliveries
        .iter()
        .map(|d| match &d.error {
            None => format!("ok      {}", d.channel),
            Some(error) => format!("FAILED  {}: {error}", d.channel),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bundle restore's plan: each member, its snapshot and target.
pub fn plan_lines(plan: &[strongbox_engine::MemberPlan]) -> String {
    plan.iter()
        .map(|m| {
            let mut line = format!(
                "would restore {} {} ({}) into {}",
                m.set, m.snapshot, m.source, m.target
            );
            if let Some(replaces) = &m.replaces {
                line.push_str(&format!(
                    "; its current content would be replaced: {replaces}"
                ));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn window_text(set: &str, timelines: &[TimelineWindow]) -> String {
    if timelines.is_empty() {
        return format!("set {set}: no WAL archived and no base backup");
    }
    let point = |p: &Option<strongbox_engine::Point>| match p {
        Some(p) => format!(
            "{} (LSN {})",
            p.time.map_or("no commit".to_string(), |t| t.to_rfc3339()),
            p.lsn
        ),
        None => "-".to_string(),
    };
    let mut lines = Vec::new();
    for t in timelines {
        lines.push(format!(
            "timeline {}: earliest {}, latest {}; {} segments ({}), {} .. {}",
            t.timeline,
            point(&t.earliest),
            point(&t.latest),
            t.segments,
            human_bytes(t.bytes),
            t.first_segment.as_deref().unwrap_or("-"),
            t.last_segment.as_deref().unwrap_or("-"),
        ));
        for backup in &t.backups {
            lines.push(format!("  {backup}"));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a tag holding a newline split its row, one holding `,` read as two.
    #[test]
    fn tags_are_listed_one_readable_cell() {
        let cases: [(&[&str], &str); 6] = [
            (&[], ""),
            (&["", "x"], r#""",x"#),
            (&["nightly", "release"], "nightly,release"),
            (&["a,b", "c"], r#""a,b",c"#),
            (&["two\nrows"], r#""two\nrows""#),
            (&["\u{1b}[2J"], r#""\u{1b}[2J""#),
        ];
        for (tags, shown) in cases {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            assert_eq!(tag_list(&tags), shown, "{tags:?}");
        }
    }

    /// Regression: fixed widths let a long set name (`maindb-safety`) or source
    /// (`postgres-physical`) push the rest of its row out of line with the header.
    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec![
                "a".to_string(),
                "maindb-safety".to_string(),
                "7".to_string(),
                "x".to_string(),
            ],
            vec![
                "bb".to_string(),
                "m".to_string(),
                "1234".to_string(),
                String::new(),
            ],
        ];
        assert_eq!(
            table(&["id", "set", "n", "tags"], &[2], rows),
            "id  set               n  tags\n\
             a   maindb-safety     7  x\n\
             bb  m              1234"
        );
    }

    #[test]
    fn ls_prints_each_name_on_one_line_and_drives_no_terminal() {
        let cases = [
            ("photos/a b.jpg", "photos/a b.jpg"),
            ("unicode/été.txt", "unicode/été.txt"),
            ("say \"hi\"", "say \"hi\""),
            ("two\nlines", "\"two\\nlines\""),
            ("bell\u{7}", "\"bell\\u{7}\""),
            ("\u{1b}[2Jcleared", "\"\\u{1b}[2Jcleared\""),
            // Named like a quoted name: quoted too, so the two differ.
            ("\"two\\nlines\"", "\"\\\"two\\\\nlines\\\"\""),
        ];
        for (name, shown) in cases {
            assert_eq!(printable(name), shown, "{name:?}");
        }
    }
}
