//! One test per storage behaviour, each run against every backend: memory, a local
//! directory and S3 (the real S3-compatible server `scripts/test.sh` starts; under CI=true
//! its absence fails).

use std::io::{Read, Write};
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use strongbox_manifest::{ObjectRef, ObjectRole};
use strongbox_storage::{
    Compression, Error, KeyHolder, Location, PutMode, Repository, Store, StoreOptions,
    UploadOptions,
};
use strongbox_test_support::{chain, unique, Faults, Rule, S3};

/// Makes fresh, empty repositories of one backend; two calls never share a prefix.
trait Backend {
    fn name(&self) -> &'static str;
    /// The store for `prefix`, not initialised.
    fn store(&self, prefix: &str) -> Store;
    fn init(&self, prefix: &str) -> Result<Repository, Error> {
        Repository::init_store(self.store(prefix))
    }
}

struct Memory(Arc<InMemory>);
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn store(&self, prefix: &str) -> Store {
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(self.0.clone(), prefix));
        Store::from_object_store(store, format!("memory://{prefix}"))
    }
}

struct Local(tempfile::TempDir);
impl Backend for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn store(&self, prefix: &str) -> Store {
        Store::create(
            &Location::Local(self.0.path().join(prefix)),
            &StoreOptions::default(),
        )
        .unwrap()
    }
}

struct Remote(S3, String);
impl Backend for Remote {
    fn name(&self) -> &'static str {
        "s3"
    }
    fn store(&self, prefix: &str) -> Store {
        let location = Location::S3 {
            bucket: self.0.bucket.clone(),
            prefix: format!("{}/{prefix}", self.1),
        };
        Store::connect(&location, &StoreOptions::default()).unwrap()
    }
}

/// Every backend this run has; S3 only when `scripts/test.sh` started it.
fn backends() -> Vec<Box<dyn Backend>> {
    let mut all: Vec<Box<dyn Backend>> = vec![
        Box::new(Memory(Arc::new(InMemory::new()))),
        Box::new(Local(tempfile::tempdir().unwrap())),
    ];
    if let Some(s3) = S3::get() {
        all.push(Box::new(Remote(s3, unique("suite"))));
    }
    all
}

/// Run `behaviour` on a fresh repository of every backend.
fn on_every_backend(behaviour: impl Fn(&dyn Backend, Repository)) {
    for backend in backends() {
        eprintln!("backend: {}", backend.name());
        let repo = backend.init("repo").unwrap();
        behaviour(backend.as_ref(), repo);
    }
}

fn put(repo: &Repository, key: &str, bytes: &[u8]) {
    repo.put(key, bytes, Compression::None, PutMode::Overwrite)
        .unwrap();
}

#[test]
fn objects_are_put_read_listed_and_deleted() {
    on_every_backend(|backend, repo| {
        put(&repo, "sets/a/data/one.bin", b"one");
        put(&repo, "sets/a/data/two.bin", b"two!");
        put(&repo, "sets/b/data/three.bin", b"3");
        assert_eq!(
            repo.read_object("sets/a/data/two.bin", None).unwrap(),
            b"two!"
        );
        let listed: Vec<(String, u64)> = repo
            .list("sets/a")
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            listed,
            [
                ("sets/a/data/one.bin".to_string(), 3),
                ("sets/a/data/two.bin".to_string(), 4)
            ],
            "{}",
            backend.name()
        );
        assert_eq!(repo.head("sets/b/data/three.bin").unwrap().size, 1);
        repo.delete("sets/a/data/one.bin").unwrap();
        repo.delete("sets/a/data/one.bin").unwrap(); // deleting twice is fine
        assert_eq!(repo.list("sets/a").unwrap().len(), 1);
    });
}

#[test]
fn a_large_object_streams_through_the_pipeline_both_ways() {
    on_every_backend(|backend, repo| {
        large_object_round_trip(backend, repo, &[0x28, 0xb5, 0x2f, 0xfd]);
    });
}

#[test]
fn a_large_object_of_an_encrypted_repository_goes_up_in_sealed_batches_and_reads_back() {
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    for backend in backends() {
        eprintln!("backend: {}", backend.name());
        let holders = [KeyHolder::Recipient(recipient.clone())];
        let repo = Repository::init_store_encrypted(backend.store("repo"), &holders).unwrap();
        large_object_round_trip(backend.as_ref(), repo, b"age-encryption.org/v1\n");
    }
}

/// A large object read without its record's check comes from a remote store through ranges
/// fetched ahead on the runtime's threads, so a caller needs no thread of its own reading
/// ahead of it. From a local directory, or read with its record's check, it does not.
#[test]
fn a_large_remote_object_read_unchecked_arrives_fetched_ahead() {
    on_every_backend(|backend, repo| {
        // Larger than one range (8 MiB): a smaller remote object is one plain GET.
        let data: Vec<u8> = (0..9 * 1024 * 1024 + 7u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        put(&repo, "sets/a/data/big.bin", &data);
        let stored = repo.stored_bytes("sets/a/data/big.bin").unwrap();
        let object = ObjectRef {
            key: "sets/a/data/big.bin".into(),
            size: stored.len() as u64,
            sha256: strongbox_archive::sha256_hex(&stored),
            role: ObjectRole::Dump,
        };
        let remote = backend.name() != "local";
        for (expected, fetched_ahead) in [(None, remote), (Some(&object), false)] {
            let mut reader = repo.open_object(&object.key, expected).unwrap();
            assert_eq!(reader.fetched_ahead(), fetched_ahead, "{}", backend.name());
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert!(back == data, "{}: read back differs", backend.name());
        }
    });
}

/// A 23 MiB object written in pieces that fit neither the parts (5 MiB) nor anything the
/// pipeline cuts: what is stored is what was recorded, and it reads back whole.
fn large_object_round_trip(backend: &dyn Backend, repo: Repository, starts: &[u8]) {
    let repo = repo.with_upload_options(UploadOptions {
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        storage_class: None,
    });
    let data: Vec<u8> = (0..23 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut writer = repo
        .create("sets/a/data/big.bin.zst", Compression::Zstd(1))
        .unwrap();
    for chunk in data.chunks(700_000) {
        writer.write_all(chunk).unwrap();
    }
    let written = writer.finish().unwrap();
    let stored = repo.stored_bytes("sets/a/data/big.bin.zst").unwrap();
    assert_eq!(written.size, stored.len() as u64, "{}", backend.name());
    assert_eq!(written.sha256, strongbox_archive::sha256_hex(&stored));
    assert!(
        stored.starts_with(starts),
        "{}: stored as expected",
        backend.name()
    );

    let object = ObjectRef {
        key: written.key.clone(),
        size: written.size,
        sha256: written.sha256.clone(),
        role: ObjectRole::Dump,
    };
    // Checked, and unchecked: from a remote store then as ranges fetched ahead, decoded (and
    // in an encrypted repository opened) where they arrive.
    for expected in [Some(&object), None] {
        let mut back = Vec::new();
        repo.open_object(&written.key, expected)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "{}: read back differs", backend.name());
    }
    assert_eq!(repo.check_object(&object).unwrap(), written.size);
}

#[test]
fn bytes_that_differ_from_the_record_fail_to_read() {
    on_every_backend(|backend, repo| {
        let written = repo
            .put(
                "sets/a/data/x.bin",
                b"the recorded bytes",
                Compression::None,
                PutMode::Overwrite,
            )
            .unwrap();
        let mut record = ObjectRef {
            key: written.key.clone(),
            size: written.size,
            sha256: written.sha256.clone(),
            role: ObjectRole::Dump,
        };
        assert_eq!(
            repo.read_object(&written.key, Some(&record)).unwrap(),
            b"the recorded bytes"
        );
        record.sha256 = "0".repeat(64);
        for result in [
            repo.read_object(&written.key, Some(&record)).map(drop),
            repo.check_object(&record).map(drop),
            repo.open_object(&written.key, Some(&record))
                .and_then(|mut r| {
                    r.read_to_end(&mut Vec::new())
                        .map_err(|source| Error::Stream {
                            operation: "reading",
                            key: written.key.clone(),
                            source,
                        })
                })
                .map(drop),
        ] {
            let err = chain(&result.unwrap_err());
            assert!(err.contains("does not match"), "{}: {err}", backend.name());
        }
    });
}

#[test]
fn an_abandoned_upload_leaves_no_object() {
    on_every_backend(|backend, repo| {
        let mut writer = repo
            .create("sets/a/data/abandoned.bin", Compression::None)
            .unwrap();
        writer.write_all(&vec![7u8; 6 * 1024 * 1024]).unwrap();
        drop(writer);
        // A small object too: a local repository writes it straight into a staging file.
        let mut small = repo
            .create_small(
                "sets/a/wal/abandoned-small",
                Compression::Zstd(1),
                PutMode::Create,
            )
            .unwrap();
        small.write_all(&vec![8u8; 3 * 1024 * 1024]).unwrap();
        drop(small);
        for key in ["sets/a/data/abandoned.bin", "sets/a/wal/abandoned-small"] {
            assert!(
                matches!(repo.head(key), Err(Error::NotFound { .. })),
                "{}: {key}",
                backend.name()
            );
        }
        assert!(repo
            .list("sets/a")
            .unwrap()
            .iter()
            .all(|o| !o.key.contains("abandoned")));
        if let Some(root) = repo.local_root() {
            let staged = walk(root)
                .into_iter()
                .filter(|p| p.to_string_lossy().contains('#'))
                .collect::<Vec<_>>();
            assert!(staged.is_empty(), "staging files left: {staged:?}");
        }
    });
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn a_conditional_create_refuses_an_existing_object_and_a_lock_a_second_holder() {
    on_every_backend(|backend, repo| {
        repo.put(
            "sets/a/snapshots/x.json",
            b"{}",
            Compression::None,
            PutMode::Create,
        )
        .unwrap();
        let again = repo.put(
            "sets/a/snapshots/x.json",
            b"{}",
            Compression::None,
            PutMode::Create,
        );
        assert!(
            matches!(again, Err(Error::AlreadyExists { ref key, .. }) if key == "sets/a/snapshots/x.json"),
            "{}: {again:?}",
            backend.name()
        );
        if let Some(root) = repo.local_root() {
            assert!(!walk(root).iter().any(|p| p.to_string_lossy().contains('#')));
        }

        let held = repo.lock("media", "backup").unwrap();
        let second = repo.lock("media", "prune").unwrap_err();
        let text = second.to_string();
        assert!(
            text.contains("locked by backup")
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        drop(repo.lock("media", "prune").unwrap());
        assert!(repo.lock_info("media").unwrap().is_none());
    });
}

#[test]
fn missing_objects_are_named() {
    on_every_backend(|backend, repo| {
        let err = repo.read_object("sets/a/data/nope.bin", None).unwrap_err();
        assert!(
            matches!(err, Error::NotFound { ref key, .. } if key == "sets/a/data/nope.bin"),
            "{}: {err}",
            backend.name()
        );
        assert!(repo.open_object("sets/a/data/nope.bin", None).is_err());
        assert!(matches!(repo.head("nope"), Err(Error::NotFound { .. })));
    });
}

/// What `key` reads as through the pipeline, its size not given.
fn opened(repo: &Repository, key: &str) -> Vec<u8> {
    let mut back = Vec::new();
    repo.open_object(key, None)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    back
}

/// A repository of `backend` behind recorded faults, holding one small listing.
fn with_a_listing(
    backend: &dyn Backend,
    prefix: &str,
) -> (Arc<Faults>, Repository, strongbox_storage::Written) {
    let faults = Faults::new();
    let repo = Repository::init_store(faults.layer(backend.store(prefix))).unwrap();
    let written = repo
        .put(
            "sets/a/data/1.files.json.zst",
            b"a delta listing",
            Compression::Zstd(3),
            PutMode::Create,
        )
        .unwrap();
    (faults, repo, written)
}

#[test]
fn objects_fetched_ahead_are_requested_once_still_checked_and_named_when_missing() {
    on_every_backend(|backend, _| {
        let (faults, repo, written) = with_a_listing(backend, "ahead");
        let gone = "sets/a/data/0.files.json.zst".to_string();
        let ahead = repo.prefetch([(written.key.clone(), written.size), (gone.clone(), 100)]);

        assert_eq!(
            opened(&repo, &written.key),
            b"a delta listing",
            "{}",
            backend.name()
        );
        // Taken from what was fetched ahead: no HEAD for its size before a GET.
        let requested = |key: &str| {
            faults
                .requests()
                .iter()
                .filter(|(kind, k)| kind == "Get" && k.ends_with(key))
                .count()
        };
        assert_eq!(requested(&written.key), 1, "{}", backend.name());
        let err = repo.open_object(&gone, None).map(drop).unwrap_err();
        assert!(
            matches!(err, Error::NotFound { ref key, .. } if *key == gone),
            "{}: {err}",
            backend.name()
        );

        drop(ahead);

        // Fetched ahead is not trusted: the record's digest still decides.
        let _ahead = repo.prefetch([(written.key.clone(), written.size)]);
        let record = ObjectRef {
            key: written.key.clone(),
            size: written.size,
            sha256: "0".repeat(64),
            role: ObjectRole::Listing,
        };
        let err = repo.check_object(&record).unwrap_err();
        assert!(
            chain(&err).contains("does not match"),
            "{}: {err}",
            backend.name()
        );
    });
}

#[test]
fn a_fetch_ahead_that_failed_is_made_again_when_the_object_is_opened() {
    on_every_backend(|backend, _| {
        let (faults, repo, written) = with_a_listing(backend, "again");
        faults.add(Rule::reads().containing(&written.key));
        let _ahead = repo.prefetch([(written.key.clone(), written.size)]);
        if repo.prefetches() {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while faults.injected() == 0 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(
                faults.injected(),
                1,
                "{}: the fetch ahead failed",
                backend.name()
            );
        }
        faults.clear();
        assert_eq!(
            opened(&repo, &written.key),
            b"a delta listing",
            "{}",
            backend.name()
        );
    });
}

#[test]
fn repositories_under_other_prefixes_are_separate_and_init_twice_is_refused() {
    on_every_backend(|backend, repo| {
        put(&repo, "sets/a/data/one.bin", b"one");
        let other = backend.init("other").unwrap();
        assert!(
            other.list("sets").unwrap().is_empty(),
            "{}: prefixes leak",
            backend.name()
        );
        assert_ne!(repo.marker().id, other.marker().id);
        let err = backend.init("other").unwrap_err();
        assert!(
            matches!(err, Error::AlreadyInitialized { .. }),
            "{}: {err}",
            backend.name()
        );
    });
}

#[test]
fn init_refuses_a_location_that_holds_anything_but_lost_and_found() {
    for backend in backends() {
        let name = backend.name();
        let rt = tokio_runtime();
        // The objects go in through a store of this runtime; the repository gets a fresh
        // one (an S3 client's pooled connections belong to the runtime that opened them:
        // the repository's first request waited 30 s for one nobody drove).
        let with = |prefix: &str, keys: &[&str]| {
            let store = backend.store(prefix);
            for key in keys {
                rt.block_on(
                    store
                        .object_store()
                        .put(&(*key).into(), b"x".to_vec().into()),
                )
                .unwrap();
            }
            backend.store(prefix)
        };
        let taken = with("taken", &["notes.txt", "www/index.html"]);
        let err = Repository::init_store(taken).unwrap_err();
        assert!(
            matches!(err, Error::NotEmpty { ref found, .. } if found == "notes.txt, www/"),
            "{name}: {err}"
        );
        assert!(
            rt.block_on(
                backend
                    .store("taken")
                    .object_store()
                    .head(&"strongbox.json".into())
            )
            .is_err(),
            "{name}: a marker was written"
        );
        Repository::init_store(with("mount", &["lost+found/old"])).unwrap();
    }
}

#[test]
fn a_newer_format_or_an_unknown_encryption_is_refused() {
    on_every_backend(|backend, repo| {
        for (change, complaint) in [
            (("version", "2"), "format version 2"),
            (("encryption", "\"aes-siv\""), "encrypted (\"aes-siv\")"),
            (
                ("encryption", "\"age\""),
                "says \"age\" but has no recipient",
            ),
        ] {
            let mut json = serde_json::to_value(repo.marker()).unwrap();
            json[change.0] = serde_json::from_str(change.1).unwrap();
            // A store of its own: an HTTP client must not outlive the runtime it ran on.
            let store = backend.store("repo");
            tokio_runtime()
                .block_on(store.object_store().put(
                    &"strongbox.json".into(),
                    serde_json::to_vec(&json).unwrap().into(),
                ))
                .unwrap();
            let err = Repository::open_store(backend.store("repo")).unwrap_err();
            assert!(
                err.to_string().contains(complaint),
                "{}: {err}",
                backend.name()
            );
        }
    });
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_wrapper_sees_every_object_written() {
    on_every_backend(|backend, _| {
        let faults = Faults::new();
        let repo = Repository::init_store(faults.layer(backend.store("wrapped"))).unwrap();
        let mut writer = repo
            .create("sets/a/data/1.tar.zst", Compression::Zstd(3))
            .unwrap();
        writer.write_all(&[1u8; 100_000]).unwrap();
        writer.finish().unwrap();
        repo.put(
            "sets/a/data/1.files.json.zst",
            b"[]",
            Compression::Zstd(3),
            PutMode::Create,
        )
        .unwrap();
        repo.put_run("a", "run", b"{}").unwrap();
        drop(repo.lock("a", "backup").unwrap());

        let mut stored = faults.stored_keys();
        stored.sort();
        let mut listed: Vec<String> = repo.list("").unwrap().into_iter().map(|o| o.key).collect();
        listed.sort();
        // Everything in the store was written through the wrapper (the lock came and went).
        stored.retain(|k| !k.starts_with("locks/"));
        assert_eq!(stored, listed, "{}", backend.name());
        assert_eq!(
            listed.len(),
            4,
            "marker, archive, listing, journal: {listed:?}"
        );

        // A part fails mid-upload: no object.
        faults.add(Rule::writes().containing("/data/2").after(2));
        let refused = repo
            .create("sets/a/data/2.tar.zst", Compression::None)
            .map_err(|e| chain(&e))
            .and_then(|mut writer| {
                writer
                    .write_all(&[2u8; 12 * 1024 * 1024])
                    .map_err(|e| chain(&e))?;
                writer.finish().map(drop).map_err(|e| chain(&e))
            });
        let err = refused.expect_err("an injected fault fails the write");
        assert!(err.contains("injected fault"), "{}: {err}", backend.name());
        assert!(faults.injected() > 0);
        assert!(matches!(
            repo.head("sets/a/data/2.tar.zst"),
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn a_damaged_record_is_set_apart_and_named_once() {
    on_every_backend(|backend, repo| {
        let key = "sets/media/snapshots/20261203T020000Z-000abc.json";
        put(&repo, key, b"{garbage");
        let records = repo.records(None).unwrap();
        assert!(records.snapshots.is_empty(), "{}", backend.name());
        let damaged: Vec<(&str, &str, &str)> = records
            .damaged
            .iter()
            .map(|d| (d.key.as_str(), d.set.as_str(), d.id.as_str()))
            .collect();
        assert_eq!(damaged, [(key, "media", "20261203T020000Z-000abc")]);
        let text = chain(&repo.snapshots(Some("media")).unwrap_err());
        assert_eq!(text.matches(key).count(), 1, "{}: {text}", backend.name());
    });
}

#[test]
fn an_unreadable_lock_is_corrupt_and_holds_the_set() {
    on_every_backend(|backend, repo| {
        put(&repo, "locks/media.json", b"garbage");
        for err in [
            repo.lock_info("media").unwrap_err(),
            repo.lock("media", "backup").unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::Corrupt { ref key, .. } if key == "locks/media.json"),
                "{}: {err}",
                backend.name()
            );
        }
    });
}
