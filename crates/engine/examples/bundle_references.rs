//! Benchmark of a bundle's reference cross-check at scale (not a test; run by hand or by
//! `scripts/bench.sh`): N references in an SQLite table, in shuffled order, against an
//! N-entry files listing, as a bundle backup does it — the query runs inside the dump (the
//! database sorts), its rows stream into a temporary file, the listing is streamed for its
//! paths, and one merge pass compares the two. About 1 % of each side is missing from the
//! other. The check runs in a process of its own, so its peak RSS is the check's alone.
//!
//! ```sh
//! cargo run --release -p strongbox-engine --example bundle_references -- 1000000
//! ```

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use strongbox_db_dump::{DatabaseSource, SnapshotQuery, SqliteSource};
use strongbox_engine::{check_references, References};
use strongbox_manifest::{FileEntry, FileType, Listing, SnapshotId, SourceKind};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = &args[..] {
        if flag == "--check" {
            return check(Path::new(dir));
        }
    }
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    generate(dir.path(), n)?;
    let status = Command::new(std::env::current_exe()?)
        .arg("--check")
        .arg(dir.path())
        .status()?;
    assert!(status.success(), "the check failed");
    Ok(())
}

/// `app.sqlite3` with rows `media/avatars/<i*7919 mod n>.jpg` (shuffled), and
/// `listing.json` with n files, every hundredth under another name.
fn generate(dir: &Path, n: u64) -> Result<()> {
    let sql = format!(
        "CREATE TABLE uploads (path TEXT);
         WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {last})
         INSERT INTO uploads SELECT 'media/avatars/' || printf('%08d', (i * 7919) % {n}) || '.jpg' FROM c;",
        last = n - 1
    );
    let made = Command::new("sqlite3")
        .arg(dir.join("app.sqlite3"))
        .arg(&sql)
        .status()?;
    assert!(made.success(), "sqlite3 could not make the database");
    let entries: Vec<FileEntry> = (0..n)
        .map(|i| FileEntry {
            path: if i % 100 == 0 {
                format!("avatars/{i:08}.orphan.jpg")
            } else {
                format!("avatars/{i:08}.jpg")
            },
            kind: FileType::File,
            size: 1000,
            mode: 0o644,
            uid: None,
            gid: None,
            mtime: 0,
            sha256: Some("0".repeat(64)),
            target: None,
            holder: None,
            offset: None,
            ctime: 0,
            inode: i,
        })
        .collect();
    Listing::new(SnapshotId::generate(chrono::Utc::now()), entries)
        .write_json(std::fs::File::create(dir.join("listing.json"))?)?;
    Ok(())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn check(dir: &Path) -> Result<()> {
    let references = References {
        database: "appdb".into(),
        query: "SELECT path FROM uploads".into(),
        files: "media".into(),
        prefix: Some("media/".into()),
    };
    let started = Instant::now();
    let mut kept = tempfile::tempfile()?;
    let mut out = BufWriter::new(&mut kept);
    let mut inside = |q: &mut dyn SnapshotQuery| references.keep(q, SourceKind::Sqlite, &mut out);
    SqliteSource::new(dir.join("app.sqlite3")).dump_with(&mut std::io::sink(), &mut inside)?;
    out.flush()?;
    drop(out);
    let queried = started.elapsed();
    let listing = BufReader::with_capacity(1 << 20, std::fs::File::open(dir.join("listing.json"))?);
    let paths = Listing::file_paths("listing.json", listing)?;
    let listed = paths.len();
    let read = started.elapsed() - queried;
    let merge_started = Instant::now();
    let check = check_references(|| Ok(paths.iter().map(Ok)), &mut kept)?;
    println!(
        "{} references vs {listed} listed files: dump + query {:.2} s, listing read {:.2} s, \
         merge {:.2} s, {:.2} s in all; {} missing, {} orphans; peak RSS {:.0} MiB",
        check.checked,
        queried.as_secs_f64(),
        read.as_secs_f64(),
        merge_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        check.missing_count,
        check.orphans_count,
        peak_rss_mib()
    );
    assert_eq!(check.missing_count, check.orphans_count);
    Ok(())
}
