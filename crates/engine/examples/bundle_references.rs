//! Benchmark of a bundle's reference cross-check at scale (not a test; run by hand or by
//! `scripts/bench.sh`): N references in an SQLite table, in shuffled order, against an
//! N-entry files listing read back from JSON, as a bundle backup does it — the query runs
//! inside the dump (the database sorts), its rows stream into a temporary file, and one
//! merge pass compares them with the sorted listing. About 1 % of each side is missing
//! from the other.
//!
//! ```sh
//! cargo run --release -p strongbox-engine --example bundle_references -- 1000000
//! ```

use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::Instant;

use strongbox_db_dump::{DatabaseSource, SqliteSource};
use strongbox_engine::{check_references, References};
use strongbox_manifest::{FileEntry, FileType, Listing, SnapshotId, SourceKind};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("app.sqlite3");
    // Rows i*7919 mod n (a permutation for n not divisible by 7919), 1 % not on disk.
    let sql = format!(
        "CREATE TABLE uploads (path TEXT);
         WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {last})
         INSERT INTO uploads SELECT 'media/avatars/' || printf('%08d', (i * 7919) % {n}) || '.jpg' FROM c;",
        last = n - 1
    );
    let made = Command::new("sqlite3").arg(&db).arg(&sql).status()?;
    assert!(made.success(), "sqlite3 could not make the database");
    let entries: Vec<FileEntry> = (0..n)
        .map(|i| {
            let name = if i % 100 == 0 {
                format!("avatars/{i:08}.orphan.jpg")
            } else {
                format!("avatars/{i:08}.jpg")
            };
            FileEntry {
                path: name,
                kind: FileType::File,
                size: 1000,
                mode: 0o644,
                mtime: 0,
                sha256: Some("0".repeat(64)),
                target: None,
                holder: None,
                ctime: 0,
                inode: i,
            }
        })
        .collect();
    let listing_file = dir.path().join("listing.json");
    Listing::new(SnapshotId::generate(chrono::Utc::now()), entries)
        .write_json(std::fs::File::create(&listing_file)?)?;
    let references = References {
        database: "appdb".into(),
        query: "SELECT path FROM uploads".into(),
        files: "media".into(),
        prefix: Some("media/".into()),
    };
    // Measure from here: what a bundle backup holds for the check, not the generator.
    let generator_rss = peak_rss_mib();
    std::fs::write("/proc/self/clear_refs", "5")?;

    let started = Instant::now();
    let mut kept = tempfile::tempfile()?;
    let mut out = BufWriter::new(&mut kept);
    let mut inside = |q: &mut dyn strongbox_db_dump::SnapshotQuery| {
        references.keep(q, SourceKind::Sqlite, &mut out)
    };
    SqliteSource::new(&db).dump_with(&mut std::io::sink(), &mut inside)?;
    out.flush()?;
    drop(out);
    let queried = started.elapsed();
    // As the engine reads the listing object for the check: streamed, paths only.
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&listing_file)?);
    let paths = Listing::file_paths("listing", reader)?;
    let listed = paths.len();
    let merge_started = Instant::now();
    let check = check_references(paths, &mut kept)?;
    let merged = merge_started.elapsed();
    println!(
        "{n} references vs {} listing entries: dump + query {:.2} s, listing parse {:.2} s, merge {:.2} s; \
         checked {}, missing {}, orphans {}; peak RSS of the check {:.0} MiB (the generator's before it: {:.0} MiB)",
        listed,
        queried.as_secs_f64(),
        (merge_started - started - queried).as_secs_f64(),
        merged.as_secs_f64(),
        check.checked,
        check.missing_count,
        check.orphans_count,
        peak_rss_mib(),
        generator_rss
    );
    assert_eq!(check.missing_count, check.orphans_count);
    Ok(())
}
