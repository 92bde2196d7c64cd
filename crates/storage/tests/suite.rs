//! One suite of storage behaviours, run against every backend: memory, local and S3 (the
//! real S3-compatible server `scripts/test.sh` starts; under CI=true its absence fails).

use std::io::{Read, Write};
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use strongbox_storage::{Error, Location, PutMode, Repository, UploadOptions};

/// Makes fresh, empty repositories of one backend; two calls never share a prefix.
trait Backend {
    fn name(&self) -> &'static str;
    fn init(&self, prefix: &str) -> Result<Repository, Error>;
    fn fresh(&self, prefix: &str) -> Repository {
        self.init(prefix).unwrap()
    }
}

struct Memory(Arc<InMemory>);
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn init(&self, prefix: &str) -> Result<Repository, Error> {
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(self.0.clone(), prefix));
        Repository::init_store(store, format!("memory://{prefix}"))
    }
}

struct Local(tempfile::TempDir);
impl Backend for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn init(&self, prefix: &str) -> Result<Repository, Error> {
        Repository::init(&Location::Local(self.0.path().join(prefix)))
    }
}

struct S3 {
    bucket: String,
    run: String,
}
impl Backend for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }
    fn init(&self, prefix: &str) -> Result<Repository, Error> {
        let location = Location::S3 {
            bucket: self.bucket.clone(),
            prefix: format!("suite-{}/{prefix}", self.run),
        };
        Repository::init(&location)
    }
}

/// The S3 backend when `scripts/test.sh` started a server; under CI its absence is a failure.
fn s3_backend() -> Option<S3> {
    match std::env::var("STRONGBOX_TEST_S3_BUCKET") {
        Ok(bucket) => Some(S3 {
            bucket,
            run: format!("{:08x}", rand_u32()),
        }),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("STRONGBOX_TEST_S3_BUCKET is not set under CI=true: the S3 server did not start")
        }
        Err(_) => {
            eprintln!("skipping the S3 backend: STRONGBOX_TEST_S3_BUCKET is not set (run scripts/test.sh)");
            None
        }
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}

fn backends() -> Vec<Box<dyn Backend>> {
    let mut all: Vec<Box<dyn Backend>> = vec![
        Box::new(Memory(Arc::new(InMemory::new()))),
        Box::new(Local(tempfile::tempdir().unwrap())),
    ];
    if let Some(s3) = s3_backend() {
        all.push(Box::new(s3));
    }
    all
}

fn put_get_list_delete(repo: &Repository) {
    repo.put(
        "sets/a/data/one.bin",
        b"one".to_vec().into(),
        PutMode::Overwrite,
    )
    .unwrap();
    repo.put(
        "sets/a/data/two.bin",
        b"two!".to_vec().into(),
        PutMode::Overwrite,
    )
    .unwrap();
    repo.put(
        "sets/b/data/three.bin",
        b"3".to_vec().into(),
        PutMode::Overwrite,
    )
    .unwrap();
    assert_eq!(&repo.get("sets/a/data/two.bin").unwrap()[..], b"two!");
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
        ]
    );
    assert_eq!(repo.head("sets/b/data/three.bin").unwrap().size, 1);
    repo.delete("sets/a/data/one.bin").unwrap();
    repo.delete("sets/a/data/one.bin").unwrap(); // deleting twice is fine
    assert_eq!(repo.list("sets/a").unwrap().len(), 1);
}

fn large_multipart_object_streams_both_ways(repo: &Repository) {
    let repo = repo.clone().with_upload_options(UploadOptions {
        part_size: 5 * 1024 * 1024,
        concurrency: 2,
        storage_class: None,
    });
    let data: Vec<u8> = (0..23 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut writer = repo.writer("sets/a/data/big.bin").unwrap();
    for chunk in data.chunks(700_000) {
        writer.write_all(chunk).unwrap();
    }
    let written = writer.finish().unwrap();
    assert_eq!(written.size, data.len() as u64);
    assert_eq!(written.sha256, strongbox_archive_free_sha256(&data));
    let mut back = Vec::new();
    repo.reader("sets/a/data/big.bin")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "read back differs");
}

fn strongbox_archive_free_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn abandoned_upload_leaves_no_object(repo: &Repository) {
    let mut writer = repo.writer("sets/a/data/abandoned.bin").unwrap();
    writer.write_all(&vec![7u8; 6 * 1024 * 1024]).unwrap();
    drop(writer);
    assert!(matches!(
        repo.head("sets/a/data/abandoned.bin"),
        Err(Error::NotFound { .. })
    ));
    assert!(repo
        .list("sets/a/data")
        .unwrap()
        .iter()
        .all(|o| !o.key.contains("abandoned")));
}

fn conditional_create_and_locks(repo: &Repository) {
    repo.put("locks/x.json", b"{}".to_vec().into(), PutMode::Create)
        .unwrap();
    let again = repo.put("locks/x.json", b"{}".to_vec().into(), PutMode::Create);
    assert!(
        matches!(again, Err(Error::AlreadyExists { ref key, .. }) if key == "locks/x.json"),
        "{again:?}"
    );
    repo.delete("locks/x.json").unwrap();

    let held = repo.lock("media", "backup").unwrap();
    let second = repo.lock("media", "prune").unwrap_err();
    let text = second.to_string();
    assert!(
        text.contains("locked by backup") && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(held);
    drop(repo.lock("media", "prune").unwrap());
    assert!(repo.lock_info("media").unwrap().is_none());
}

fn missing_objects_are_named(repo: &Repository) {
    let err = repo.get("sets/a/data/nope.bin").unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref key, .. } if key == "sets/a/data/nope.bin"),
        "{err}"
    );
    assert!(repo.reader("sets/a/data/nope.bin").is_err());
    assert!(matches!(repo.head("nope"), Err(Error::NotFound { .. })));
}

fn init_twice_is_refused(backend: &dyn Backend, prefix: &str) {
    let err = backend.init(prefix).unwrap_err();
    assert!(
        matches!(err, Error::AlreadyInitialized { .. }),
        "{}: {err}",
        backend.name()
    );
}

#[test]
fn every_backend_behaves_the_same() {
    for backend in backends() {
        let name = backend.name();
        eprintln!("storage suite: {name}");
        let repo = backend.fresh("one");
        put_get_list_delete(&repo);
        large_multipart_object_streams_both_ways(&repo);
        abandoned_upload_leaves_no_object(&repo);
        conditional_create_and_locks(&repo);
        missing_objects_are_named(&repo);

        // Prefix isolation: a second repository sees none of the first one's objects.
        let other = backend.fresh("two");
        assert!(
            other.list("sets").unwrap().is_empty(),
            "{name}: prefixes leak"
        );
        assert_ne!(repo.marker().id, other.marker().id);
        init_twice_is_refused(backend.as_ref(), "two");
    }
}
