//! Property-based fuzzing (proptest) of the readers that take bytes from a repository:
//! snapshot records, files listings (with the tree check restores rely on), and tar
//! archives (plain and zstd-compressed). Each input is a valid one from the corpus below
//! with a few edits drawn by proptest (bit flips, random bytes, deletions, duplications,
//! JSON and path tokens, truncations); a reader may refuse any input, but must not panic,
//! and whatever it accepts must be safe: every path relative, without `..`. A failing
//! input is shrunk and its seed kept in `fuzz.proptest-regressions` beside this file,
//! replayed first by every later run.
//!
//! The suite runs 2,000 cases of each. For a long run:
//! `STRONGBOX_FUZZ_CASES=50000000 cargo test --release -p strongbox-verify --test fuzz -- --nocapture --test-threads 2`

use std::io::{Read, Write};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use strongbox_archive::{safe_relative_path, ArchiveReader, Compression, Decoder, Encoder};
use strongbox_manifest::{Listing, Snapshot};

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

/// One change to an input; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize, to: usize },
    Token { at: usize, token: usize },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        (at, 0usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at, 0usize..64, any::<usize>()).prop_map(|(at, len, to)| Edit::Duplicate { at, len, to }),
        (at, 0..DICTIONARY.len()).prop_map(|(at, token)| Edit::Token { at, token }),
        at.prop_map(|at| Edit::Truncate { at }),
        (at, proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
    ]
}

fn apply(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        let place = |at: usize, len: usize| at % (len + 1);
        match edit {
            Edit::Flip { at, bit } if !out.is_empty() => {
                let i = at % out.len();
                out[i] ^= 1 << bit;
            }
            Edit::Set { at, byte } if !out.is_empty() => {
                let i = at % out.len();
                out[i] = *byte;
            }
            Edit::Delete { at, len } => {
                let at = place(*at, out.len());
                let end = (at + len).min(out.len());
                out.drain(at..end);
            }
            Edit::Duplicate { at, len, to } => {
                let at = place(*at, out.len());
                let copy = out[at..(at + len).min(out.len())].to_vec();
                let to = place(*to, out.len());
                out.splice(to..to, copy);
            }
            Edit::Token { at, token } => {
                let at = place(*at, out.len());
                out.splice(at..at, DICTIONARY[*token].iter().copied());
            }
            Edit::Truncate { at } => out.truncate(place(*at, out.len())),
            Edit::Insert { at, bytes } => {
                let at = place(*at, out.len());
                out.splice(at..at, bytes.iter().copied());
            }
            Edit::Flip { .. } | Edit::Set { .. } => {}
        }
    }
    out
}

/// A corpus input with one to four edits.
fn mutations(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (0..corpus.len(), proptest::collection::vec(edit(), 1..5))
        .prop_map(move |(i, edits)| apply(&corpus[i], &edits))
}

/// 2,000 cases, or `STRONGBOX_FUZZ_CASES`.
fn config() -> Config {
    let cases = std::env::var("STRONGBOX_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
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

fn compressed_tar() -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), Compression::Zstd(3), 0).unwrap();
    encoder.write_all(&sample_tar()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn the_corpus_is_valid() {
    Snapshot::from_json("k", RECORD.as_bytes()).unwrap();
    Snapshot::from_json("k", PHYSICAL.as_bytes()).unwrap();
    strongbox_verify::check_tree(&Listing::from_json("k", LISTING.as_bytes()).unwrap()).unwrap();
    let mut entries = 0;
    let compressed = compressed_tar();
    let decoder = Decoder::new(&compressed[..]).unwrap();
    ArchiveReader::new(decoder)
        .for_each(|_| -> Result<(), strongbox_archive::Error> {
            entries += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(entries, 4);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn records_never_panic_the_reader(
        input in mutations(vec![RECORD.into(), PHYSICAL.into()])
    ) {
        let _ = Snapshot::from_json("k", &input);
    }

    #[test]
    fn listings_the_tree_check_accepts_hold_only_safe_paths(
        input in mutations(vec![LISTING.into()])
    ) {
        if let Ok(listing) = Listing::from_json("k", &input) {
            if strongbox_verify::check_tree(&listing).is_ok() {
                for entry in &listing.entries {
                    prop_assert!(
                        safe_relative_path(&entry.path).is_ok(),
                        "the tree check let {:?} through",
                        entry.path
                    );
                }
            }
        }
    }

    #[test]
    fn tar_streams_hand_out_only_safe_paths(input in mutations(vec![sample_tar()])) {
        read_all(&input[..]);
    }

    #[test]
    fn zstd_compressed_tar_streams_never_panic_the_decoder_or_the_reader(
        input in mutations(vec![compressed_tar()])
    ) {
        if let Ok(decoder) = Decoder::new(&input[..]) {
            read_all(decoder.take(64 << 20));
        }
    }
}
