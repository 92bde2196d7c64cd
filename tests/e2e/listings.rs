//! Delta listings end to end: what a snapshot stores for its listing, and that every
//! snapshot of a chain still restores whole, after a prune and not after damage.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{assert_same_tree, names, object_key, tree, write, Env};

/// A tree of `count` small files in 20 directories.
fn many_files(root: &Path, count: usize) {
    for i in 0..count {
        write(
            &root.join(format!("d{:02}/f{i:05}.txt", i % 20)),
            format!("file {i}\n").as_bytes(),
        );
    }
}

/// The stored size of a snapshot's listing object and its JSON.
fn stored_listing(env: &Env, record: &Value) -> (u64, Value) {
    let key = object_key(record, "listing");
    let path = Path::new(&env.repo).join(&key);
    let out = Command::new("zstd").arg("-dc").arg(&path).output().unwrap();
    assert!(out.status.success(), "zstd -dc {key}");
    (
        fs::metadata(&path).unwrap().len(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn a_no_change_snapshot_stores_a_delta_of_a_few_hundred_bytes_and_every_snapshot_restores_whole() {
    let env = Env::new();
    let src = env.path("src");
    many_files(&src, 2000);
    let full = env.backup("media", &src, &[]);
    let (whole_size, whole) = stored_listing(&env, &full);
    assert_eq!(whole["format"], "strongbox-files");
    assert!(
        whole_size > 20_000,
        "whole listing of 2000 files: {whole_size} B"
    );
    let mut trees = vec![(full["id"].as_str().unwrap().to_string(), tree(&src))];

    let same = env.backup("media", &src, &[]);
    let (size, delta) = stored_listing(&env, &same);
    assert_eq!(delta["format"], "strongbox-files-delta");
    assert_eq!(delta["entries"], serde_json::json!([]));
    assert_eq!(delta["delta"]["base"], full["id"]);
    assert_eq!(delta["delta"]["key"], object_key(&full, "listing"));
    assert!(size < 400, "no-change delta listing: {size} B");
    trees.push((same["id"].as_str().unwrap().to_string(), tree(&src)));

    write(&src.join("d03/f00003.txt"), b"changed");
    fs::remove_file(src.join("d04/f00004.txt")).unwrap();
    write(&src.join("d05/new.txt"), b"new");
    let changed = env.backup("media", &src, &[]);
    let (_, delta) = stored_listing(&env, &changed);
    let carried: Vec<&str> = delta["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    // A file rewritten in place leaves its directory's mtime alone; a removal or a new file
    // changes it.
    assert_eq!(carried, ["d03/f00003.txt", "d04", "d05", "d05/new.txt"]);
    assert_eq!(
        delta["delta"]["removed"],
        serde_json::json!(["d04/f00004.txt"])
    );
    assert_eq!(delta["delta"]["depth"], 2);
    trees.push((changed["id"].as_str().unwrap().to_string(), tree(&src)));

    for (id, expected) in &trees {
        let target = env.path(&format!("r-{id}"));
        env.restore(id, &target, &[]);
        assert_same_tree(expected, &tree(&target));
    }
    let ls = env.json(&["ls", trees[2].0.as_str()]);
    assert_eq!(ls.as_array().unwrap().len(), 2000 + 20);
}

#[test]
fn a_listing_is_stored_whole_again_after_thirty_deltas() {
    let env = Env::new();
    let src = env.path("src");
    many_files(&src, 40);
    env.backup("media", &src, &[]);
    for depth in 1..=31 {
        let record = env.backup("media", &src, &[]);
        let (_, listing) = stored_listing(&env, &record);
        if depth <= 30 {
            assert_eq!(listing["delta"]["depth"], depth, "snapshot {depth}");
        } else {
            assert_eq!(listing["format"], "strongbox-files", "snapshot {depth}");
        }
    }
}

#[test]
fn a_prune_that_forgets_the_bases_keeps_their_listings_and_the_chain_restores() {
    let env = Env::new();
    let src = env.path("src");
    many_files(&src, 200);
    let full = env.backup("media", &src, &[]);
    let middle = env.backup("media", &src, &[]);
    write(&src.join("d01/late.txt"), b"late");
    let last = env.backup("media", &src, &[]);

    let report = env.json(&["prune", "media", "--keep-last", "1"]);
    let retained = report["retained_for_chains"].as_array().unwrap();
    for record in [&full, &middle] {
        let key = serde_json::json!(object_key(record, "listing"));
        assert!(retained.contains(&key), "{key} in {retained:?}");
    }
    // A second prune finds them unowned and still needed.
    let again = env.json(&["prune", "media", "--keep-last", "1"]);
    assert_eq!(again["deleted_objects"], 0, "{again}");

    let target = env.path("restored");
    env.restore(last["id"].as_str().unwrap(), &target, &[]);
    assert_same_tree(&tree(&src), &tree(&target));
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );
}

/// A full snapshot of 200 files and an incremental whose listing is a delta of the full
/// one's: the base listing's key and the incremental's id.
fn delta_on_a_base(env: &Env) -> (String, String) {
    let src = env.path("src");
    many_files(&src, 200);
    let full = env.backup("media", &src, &[]);
    let last = env.backup("media", &src, &[]);
    let id = last["id"].as_str().unwrap().to_string();
    (object_key(&full, "listing"), id)
}

/// `restore ID` into a new target, which must fail naming `base`; the target.
fn restore_fails_naming(env: &Env, id: &str, base: &str) -> std::path::PathBuf {
    let target = env.path("restored");
    let target_arg = target.display().to_string();
    let stderr = env.fails(&["restore", id, "--target", target_arg.as_str()], 1);
    assert!(stderr.contains(base), "{stderr}");
    target
}

#[test]
fn a_damaged_base_listing_fails_restore_and_verify_naming_it_and_writes_nothing() {
    let env = Env::new();
    let (base, id) = delta_on_a_base(&env);
    let path = Path::new(&env.repo).join(&base);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    fs::write(&path, bytes).unwrap();

    let target = restore_fails_naming(&env, &id, &base);
    assert!(
        !target.exists() || names(&target).is_empty(),
        "restore wrote {:?}",
        names(&target)
    );

    let out = env.run(&["verify", &id, "--level", "deep", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&base), "{report}");
}

#[test]
fn a_missing_base_listing_fails_restore_naming_it_and_writes_nothing() {
    let env = Env::new();
    let (base, id) = delta_on_a_base(&env);
    fs::remove_file(Path::new(&env.repo).join(&base)).unwrap();

    let target = restore_fails_naming(&env, &id, &base);
    assert!(!target.exists(), "restore wrote {:?}", names(&target));
}
