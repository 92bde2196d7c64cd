//! Mutation fuzzing of the readers that take bytes from a repository: snapshot records,
//! files listings (with the tree check restores rely on), and tar archives (plain and
//! zstd-compressed). Each starts from valid inputs (the corpus, built below) and mutates
//! them with a seeded generator; a reader may refuse any input, but must not panic, and
//! whatever it accepts must be safe: every path relative, without `..`.
//!
//! A short run is part of the test suite. For a long one:
//! `STRONGBOX_FUZZ_SECS=600 cargo test --release -p strongbox-verify --test fuzz -- --nocapture`
//! (prints the executions). A panicking input is written to the temporary directory and
//! its hex printed, to be kept as a regression case in `regressions()`.

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use strongbox_archive::{safe_relative_path, ArchiveReader, Compression, Decoder, Encoder};
use strongbox_manifest::{Listing, Snapshot};
use strongbox_test_support::Rng;

/// `below` for lengths and indexes.
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Tokens that matter to JSON and to paths.
const DICTIONARY: &[&[u8]] = &[
    b"..",
    b"/",
    b"../",
    b"\\u0000",
    b"null",
    b"-1",
    b"18446744073709551616",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"1e999",
    b"\"file\"",
    b"\"symlink\"",
    b"\"dir\"",
    b"true",
];

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + pick(rng, 4) {
        let at = pick(rng, out.len() + 1);
        match pick(rng, 7) {
            0 if !out.is_empty() => {
                let i = pick(rng, out.len());
                out[i] ^= 1 << pick(rng, 8);
            }
            1 if !out.is_empty() => {
                let i = pick(rng, out.len());
                out[i] = rng.next_u64() as u8;
            }
            2 => {
                let len = pick(rng, 64).min(out.len() - at.min(out.len()));
                out.drain(at..at + len);
            }
            3 => {
                let len = pick(rng, 64).min(out.len() - at);
                let copy = out[at..at + len].to_vec();
                let to = pick(rng, out.len() + 1);
                out.splice(to..to, copy);
            }
            4 => {
                let token = DICTIONARY[pick(rng, DICTIONARY.len())];
                out.splice(at..at, token.iter().copied());
            }
            5 => out.truncate(at),
            _ => {
                let bytes: Vec<u8> = (0..pick(rng, 16)).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
        }
    }
    out
}

/// Run `target` on mutations of `corpus` for the configured time; returns the executions.
fn fuzz(name: &str, corpus: &[Vec<u8>], seed: u64, target: impl Fn(&[u8])) -> u64 {
    let secs: u64 = std::env::var("STRONGBOX_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng(seed);
    let mut runs = 0u64;
    for input in corpus {
        target(input);
    }
    while Instant::now() < deadline {
        let base = &corpus[pick(&mut rng, corpus.len())];
        let input = mutate(base, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("strongbox-fuzz-{name}-{runs}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: input {runs} (seed {seed}) panicked; kept at {}: {}",
                path.display(),
                hex(&input)
            );
        }
        runs += 1;
    }
    eprintln!("fuzz {name}: {runs} executions in {secs} s, seed {seed}, no panic");
    runs
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const RECORD: &str = r#"{
  "format_version": 1, "id": "20261201T020000Z-1f43c9", "set": "media", "kind": "incremental",
  "source": "files", "parent": "20261130T020000Z-000abc", "time": "2026-12-01T02:00:00Z",
  "tags": ["nightly"], "host": "web1", "tool_version": "0.1.0", "origin": "/srv/media",
  "compression": "zstd:3",
  "objects": [{"key": "sets/media/data/20261201T020000Z-1f43c9.tar.zst", "size": 10, "sha256": "00", "role": "archive"}],
  "stats": {"files": 1, "dirs": 1, "symlinks": 0, "bytes": 5, "new": 1, "changed": 0, "unchanged": 0, "deleted": 0, "bytes_read": 5, "bytes_stored": 10},
  "duration_secs": 0.5, "errors": [], "warnings": []
}"#;

const PHYSICAL: &str = r#"{
  "format_version": 1, "id": "20261201T020000Z-1f43c9", "set": "db", "kind": "full",
  "source": "postgres-physical", "parent": null, "time": "2026-12-01T02:00:00Z", "tags": [],
  "host": "db1", "tool_version": "0.1.0", "origin": "host=/run dbname=postgres", "compression": "zstd:3",
  "objects": [], "stats": {"server_version": "PostgreSQL 15.8", "system_identifier": "1",
  "timeline": 1, "wal_segment_size": 16777216, "start_lsn": "0/3000028", "stop_lsn": "0/3000100",
  "start_segment": "000000010000000000000003", "stop_segment": "000000010000000000000003",
  "stop_time": "2026-12-01T02:00:01Z", "bytes_read": 1, "bytes_stored": 1}, "duration_secs": 1.0
}"#;

const LISTING: &str = r#"{"format": "strongbox-files", "version": 1, "snapshot": "20261201T020000Z-1f43c9", "entries": [
  {"path": "a", "type": "dir", "size": 0, "mode": 493, "mtime": 0, "holder": "20261201T020000Z-1f43c9"},
  {"path": "a/b.txt", "type": "file", "size": 5, "mode": 420, "mtime": 1, "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "holder": "20261201T020000Z-1f43c9"},
  {"path": "a/link", "type": "symlink", "size": 0, "mode": 511, "mtime": 2, "target": "b.txt", "holder": "20261201T020000Z-1f43c9"}
]}"#;

#[test]
fn records_never_panic_the_reader() {
    let corpus = vec![RECORD.as_bytes().to_vec(), PHYSICAL.as_bytes().to_vec()];
    assert!(Snapshot::from_json("k", RECORD.as_bytes()).is_ok());
    assert!(Snapshot::from_json("k", PHYSICAL.as_bytes()).is_ok());
    fuzz("record", &corpus, 1, |input| {
        let _ = Snapshot::from_json("k", input);
    });
}

#[test]
fn listings_the_tree_check_accepts_hold_only_safe_paths() {
    let corpus = vec![LISTING.as_bytes().to_vec()];
    let listing = Listing::from_json("k", LISTING.as_bytes()).unwrap();
    strongbox_verify::check_tree(&listing).unwrap();
    fuzz("listing", &corpus, 2, |input| {
        let Ok(listing) = Listing::from_json("k", input) else {
            return;
        };
        if strongbox_verify::check_tree(&listing).is_ok() {
            for entry in &listing.entries {
                assert!(
                    safe_relative_path(&entry.path).is_ok(),
                    "the tree check let {:?} through",
                    entry.path
                );
            }
        }
    });
}

fn sample_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, "a", &b""[..]).unwrap();
    let mut file = tar::Header::new_ustar();
    file.set_mode(0o644);
    file.set_size(5);
    builder
        .append_data(&mut file, "a/b.txt", &b"hello"[..])
        .unwrap();
    let long = format!("a/{}", "x".repeat(150));
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o644);
    file.set_size(3);
    builder.append_data(&mut file, &long, &b"abc"[..]).unwrap();
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder.append_link(&mut link, "a/link", "b.txt").unwrap();
    builder.into_inner().unwrap()
}

/// Read every entry and its data; every path handed out must be safe.
fn read_all(reader: impl Read + Send) {
    let mut archive = ArchiveReader::new(reader);
    let _ = archive.for_each(|entry| -> Result<(), strongbox_archive::Error> {
        assert!(
            safe_relative_path(entry.path).is_ok(),
            "the archive reader handed out {:?}",
            entry.path
        );
        let _ = std::io::copy(&mut entry.data.take(1 << 20), &mut std::io::sink());
        Ok(())
    });
}

#[test]
fn tar_streams_hand_out_only_safe_paths() {
    let corpus = vec![sample_tar()];
    fuzz("tar", &corpus, 3, |input| read_all(input));
}

#[test]
fn zstd_compressed_tar_streams_never_panic_the_decoder_or_the_reader() {
    let mut encoder = Encoder::new(Vec::new(), Compression::Zstd(3), 0).unwrap();
    encoder.write_all(&sample_tar()).unwrap();
    let compressed = encoder.finish().unwrap();
    fuzz("tar.zst", &[compressed], 4, |input| {
        if let Ok(decoder) = Decoder::new(input) {
            read_all(decoder.take(64 << 20));
        }
    });
}
