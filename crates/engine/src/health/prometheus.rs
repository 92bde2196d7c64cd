//! The health report as a node_exporter textfile.

use std::fmt::Write as _;

use crate::journal::{Operation, RunStatus};
use crate::HealthReport;

impl HealthReport {
    /// The report in Prometheus' text exposition format, for node_exporter's textfile
    /// collector: every metric with `# HELP` and `# TYPE`, labelled by `set`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let per_set = |value: &dyn Fn(&crate::SetStatus) -> Option<f64>| -> Vec<(String, f64)> {
            self.sets
                .iter()
                .filter_map(|s| value(s).map(|v| (format!("set=\"{}\"", s.set), v)))
                .collect()
        };
        metric(
            "strongbox_last_success_timestamp_seconds",
            "Unix time of the set's newest snapshot.",
            per_set(&|s| s.last_snapshot.as_ref().map(|l| l.time.timestamp() as f64)),
        );
        metric(
            "strongbox_snapshots",
            "Snapshots of the set in the repository.",
            per_set(&|s| Some(s.snapshots as f64)),
        );
        metric(
            "strongbox_stored_bytes",
            "Bytes of the set's stored data objects.",
            per_set(&|s| Some(s.stored_bytes as f64)),
        );
        metric(
            "strongbox_last_backup_duration_seconds",
            "Seconds the set's last backup took.",
            per_set(&|s| s.last_run(Operation::Backup).and_then(|r| r.duration_secs)),
        );
        metric(
            "strongbox_last_verify_ok",
            "1 when the set's last verification passed, 0 when it failed.",
            per_set(&|s| {
                s.last_run(Operation::Verify)
                    .filter(|r| r.status != RunStatus::Running)
                    .map(|r| f64::from(u8::from(r.status == RunStatus::Ok)))
            }),
        );
        metric(
            "strongbox_last_restore_test_seconds",
            "Seconds the restore of the set's last restore test took.",
            per_set(&|s| s.last_verification.as_ref().and_then(|v| v.restore_secs)),
        );
        let checks = self
            .checks
            .iter()
            .map(|c| {
                let labels = match &c.set {
                    Some(set) => format!("set=\"{set}\",check=\"{}\"", c.name),
                    None => format!("check=\"{}\"", c.name),
                };
                (labels, f64::from(c.status.exit_code()))
            })
            .collect();
        metric(
            "strongbox_health_status",
            "State of each health check: 0 ok, 1 warning, 2 critical, 3 unknown.",
            checks,
        );
        out
    }
}
