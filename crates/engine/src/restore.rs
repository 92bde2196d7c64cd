use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use strongbox_manifest::{FileEntry, FileType, Listing, Snapshot, SnapshotId, SourceKind};
use strongbox_verify::{read_tree, TreeEntry};

use crate::{Engine, Error};

/// What `restore` is asked to do for a files snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// The directory to restore into (replaced as a whole).
    pub target: PathBuf,
    /// Restore only entries matching these globs (and everything below a matching directory).
    #[serde(default)]
    pub includes: Vec<String>,
    /// Replace a non-empty target.
    #[serde(default)]
    pub force: bool,
    /// Keep the replaced target as `<target>.pre-restore-<time>`.
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

fn yes() -> bool {
    true
}

impl RestoreOptions {
    /// Restore into `target` with defaults.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            target: target.into(),
            includes: Vec::new(),
            force: false,
            keep_previous: true,
        }
    }
}

/// What a restore reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The snapshot restored.
    pub snapshot: String,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// The archives read, oldest first.
    pub holders: Vec<HolderPlan>,
}

/// One archive a restore reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderPlan {
    /// The snapshot owning the archive.
    pub id: String,
    /// Entries taken from it.
    pub entries: u64,
    /// File bytes taken from it.
    pub bytes: u64,
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// What was restored.
    pub plan: RestorePlan,
    /// Where.
    pub target: PathBuf,
    /// Where the replaced target was kept, if any.
    pub previous: Option<PathBuf>,
    /// Wall-clock seconds.
    pub duration_secs: f64,
}

fn wanted_entries<'l>(
    listing: &'l Listing,
    includes: &[String],
) -> Result<Vec<&'l FileEntry>, Error> {
    if includes.is_empty() {
        return Ok(listing.entries.iter().collect());
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in includes {
        let glob = Glob::new(pattern.trim_start_matches("./").trim_end_matches('/')).map_err(
            |source| strongbox_manifest::Error::InvalidGlob {
                pattern: pattern.clone(),
                source,
            },
        )?;
        builder.add(glob);
    }
    let set: GlobSet =
        builder
            .build()
            .map_err(|source| strongbox_manifest::Error::InvalidGlob {
                pattern: includes.join(" "),
                source,
            })?;
    // An entry is wanted when it or one of its ancestors matches; its ancestors come along.
    let mut keep: HashSet<&str> = HashSet::new();
    for entry in &listing.entries {
        let path = entry.path.as_str();
        let matched = std::iter::successors(Some(path), |p| p.rsplit_once('/').map(|(a, _)| a))
            .any(|p| set.is_match(p));
        if matched {
            let mut p = path;
            keep.insert(p);
            while let Some((parent, _)) = p.rsplit_once('/') {
                keep.insert(parent);
                p = parent;
            }
        }
    }
    Ok(listing
        .entries
        .iter()
        .filter(|e| keep.contains(e.path.as_str()))
        .collect())
}

fn plan(snapshot: &Snapshot, entries: &[&FileEntry]) -> RestorePlan {
    let mut plan = RestorePlan {
        snapshot: snapshot.id.to_string(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        holders: Vec::new(),
    };
    let mut holders: BTreeMap<&str, HolderPlan> = BTreeMap::new();
    for entry in entries {
        match entry.kind {
            FileType::File => {
                plan.files += 1;
                plan.bytes += entry.size;
            }
            FileType::Dir => plan.dirs += 1,
            FileType::Symlink => plan.symlinks += 1,
        }
        let holder = entry.holder.as_ref().map_or("", |h| h.as_str());
        let h = holders.entry(holder).or_insert_with(|| HolderPlan {
            id: holder.to_string(),
            entries: 0,
            bytes: 0,
        });
        h.entries += 1;
        h.bytes += entry.size;
    }
    plan.holders = holders.into_values().collect();
    plan
}

/// Removes the staging directory unless the restore swapped it in.
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the staging directory");
            }
        }
    }
}

fn set_mtime(path: &Path, ns: i64, follow: bool) -> std::io::Result<()> {
    let time = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000) as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000) as _,
        },
    };
    let flags = if follow {
        rustix::fs::AtFlags::empty()
    } else {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &time, flags).map_err(std::io::Error::from)
}

const CHUNK: usize = 1024 * 1024;
const HOLE: usize = 64 * 1024;

/// Write `data` to a new file, leaving runs of zeros as holes.
fn write_sparse(
    file: &mut File,
    data: &mut dyn Read,
    size: u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let mut written = 0u64;
    let mut pending_hole = false;
    loop {
        let n = read_full(data, buf)?;
        if n == 0 {
            break;
        }
        for block in buf[..n].chunks(HOLE) {
            if block.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(block.len() as i64))?;
                pending_hole = true;
            } else {
                file.write_all(block)?;
                pending_hole = false;
            }
            written += block.len() as u64;
        }
    }
    if written != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("archive entry ended after {written} of {size} bytes"),
        ));
    }
    if pending_hole {
        file.set_len(size)?;
    }
    Ok(())
}

fn read_full(data: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A failure of the restore's own writes (not of the archive stream).
#[derive(Debug, thiserror::Error)]
#[error("{operation} {}: {source}", path.display())]
struct WriteFailure {
    operation: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl Engine {
    /// What restoring `snapshot` with `includes` would read and write.
    pub fn restore_plan(
        &self,
        snapshot: &Snapshot,
        includes: &[String],
    ) -> Result<RestorePlan, Error> {
        let listing = self.listing(snapshot)?;
        let entries = wanted_entries(&listing, includes)?;
        Ok(plan(snapshot, &entries))
    }

    /// Restore a files snapshot into `opts.target`: extract beside it, check every digest,
    /// then swap it in. Any failure leaves the target as it was.
    pub fn restore_files(
        &self,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
    ) -> Result<RestoreOutcome, Error> {
        if snapshot.source != SourceKind::Files {
            return Err(Error::WrongSource {
                id: snapshot.id.to_string(),
                source_kind: snapshot.source.as_str(),
                reason: "restore it into a database or file target".to_string(),
            });
        }
        let target = std::path::absolute(&opts.target)
            .map_err(|e| Error::io("resolving", &opts.target, e))?;
        match fs::symlink_metadata(&target) {
            Ok(meta) if !meta.is_dir() => return Err(Error::TargetNotDirectory { path: target }),
            Ok(_) => {
                let mut contents =
                    fs::read_dir(&target).map_err(|e| Error::io("reading", &target, e))?;
                if contents.next().is_some() && !opts.force {
                    return Err(Error::TargetNotEmpty { path: target });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("reading", &target, e)),
        }
        self.journaled(
            &snapshot.set,
            "restore",
            Some(snapshot.id.to_string()),
            || self.restore_files_inner(snapshot, opts, &target),
            |_| true,
        )
    }

    fn restore_files_inner(
        &self,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
        target: &Path,
    ) -> Result<RestoreOutcome, Error> {
        let started = Instant::now();
        let listing = self.listing(snapshot)?;
        let entries = wanted_entries(&listing, &opts.includes)?;
        let plan = plan(snapshot, &entries);
        let archives: HashMap<SnapshotId, String> = self
            .repo
            .archives(&snapshot.set)?
            .into_iter()
            .map(|(id, object)| (id, object.key))
            .collect();

        let parent = target.parent().unwrap_or(Path::new("/"));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        let staging_path = parent.join(format!(
            ".{name}.strongbox-restore-{:08x}",
            rand::random::<u32>()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging_path)
            .map_err(|e| Error::io("creating staging directory", &staging_path, e))?;
        let mut staging = Staging {
            path: staging_path.clone(),
            armed: true,
        };

        // Directories first (owner-writable until the end), symlinks last: no write can
        // ever pass through a link this restore created.
        for entry in entries.iter().filter(|e| e.kind == FileType::Dir) {
            let path = staging_path.join(&entry.path);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(|e| Error::io("creating", &path, e))?;
        }
        let wanted: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        self.progress.phase("restoring", Some(plan.bytes));
        let mut buf = vec![0u8; CHUNK];
        read_tree(
            self.repo.as_reader(),
            &listing,
            &archives,
            Some(&wanted),
            |item: TreeEntry<'_>| {
                if self.cancel.is_cancelled() {
                    return Err(Box::new(Error::Cancelled));
                }
                if item.entry.kind != FileType::File {
                    return Ok(());
                }
                let path = staging_path.join(&item.entry.path);
                let fail = |operation, source| {
                    Box::new(WriteFailure {
                        operation,
                        path: path.clone(),
                        source,
                    })
                };
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fail("creating", e))?;
                let mut tracked = crate::progress::Tracked {
                    inner: item.data,
                    progress: self.progress.as_ref(),
                    cancel: &self.cancel,
                    error: None,
                };
                let result = write_sparse(&mut file, &mut tracked, item.entry.size, &mut buf);
                if let Some(e) = tracked.error {
                    return Err(Box::new(e));
                }
                result.map_err(|e| fail("writing", e))?;
                Ok(())
            },
        )
        .map_err(|e| match e {
            strongbox_verify::Error::Visit { source, .. } => match source.downcast::<Error>() {
                Ok(inner) => *inner,
                Err(other) => Error::Verify(strongbox_verify::Error::Visit {
                    path: String::new(),
                    source: other,
                }),
            },
            other => self.cancel.or_cancelled(other),
        })?;
        self.progress.finish();
        self.cancel.check()?;

        for entry in &entries {
            let path = staging_path.join(&entry.path);
            match entry.kind {
                FileType::File => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                        .map_err(|e| Error::io("setting mode of", &path, e))?;
                    set_mtime(&path, entry.mtime, true)
                        .map_err(|e| Error::io("setting time of", &path, e))?;
                }
                FileType::Symlink => {
                    std::os::unix::fs::symlink(entry.target.as_deref().unwrap_or_default(), &path)
                        .map_err(|e| Error::io("creating link", &path, e))?;
                    set_mtime(&path, entry.mtime, false)
                        .map_err(|e| Error::io("setting time of", &path, e))?;
                }
                FileType::Dir => {}
            }
        }
        // Deepest directories first, so that setting a parent's mtime is the last touch.
        for entry in entries.iter().rev().filter(|e| e.kind == FileType::Dir) {
            let path = staging_path.join(&entry.path);
            fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                .map_err(|e| Error::io("setting mode of", &path, e))?;
            set_mtime(&path, entry.mtime, true)
                .map_err(|e| Error::io("setting time of", &path, e))?;
        }
        self.cancel.check()?;

        // The swap: the old target is renamed aside, then the staging dir takes its place.
        let previous = if target.exists() {
            let mode = fs::metadata(target).map(|m| m.permissions()).ok();
            if let Some(mode) = mode {
                fs::set_permissions(&staging_path, mode)
                    .map_err(|e| Error::io("setting mode of", &staging_path, e))?;
            }
            let aside = parent.join(format!(
                "{name}.pre-restore-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            ));
            fs::rename(target, &aside).map_err(|e| Error::io("moving aside", target, e))?;
            if let Err(e) = fs::rename(&staging_path, target) {
                // Put the old target back; the staging dir is removed by its guard.
                let _ = fs::rename(&aside, target);
                return Err(Error::io("moving the restored tree to", target, e));
            }
            Some(aside)
        } else {
            fs::set_permissions(&staging_path, fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io("setting mode of", &staging_path, e))?;
            fs::rename(&staging_path, target)
                .map_err(|e| Error::io("moving the restored tree to", target, e))?;
            None
        };
        staging.armed = false;
        let previous = match previous {
            Some(aside) if !opts.keep_previous => {
                fs::remove_dir_all(&aside)
                    .map_err(|e| Error::io("removing the previous tree", &aside, e))?;
                None
            }
            other => other,
        };
        Ok(RestoreOutcome {
            plan,
            target: target.to_path_buf(),
            previous,
            duration_secs: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_manifest::SnapshotId;

    fn listing(paths: &[(&str, FileType)]) -> Listing {
        let holder = SnapshotId::parse("20250101T000000Z-000000").unwrap();
        Listing::new(
            holder.clone(),
            paths
                .iter()
                .map(|(p, k)| FileEntry {
                    path: p.to_string(),
                    kind: *k,
                    size: 1,
                    mode: 0o644,
                    mtime: 0,
                    sha256: None,
                    target: None,
                    holder: Some(holder.clone()),
                    ctime: 0,
                    inode: 0,
                })
                .collect(),
        )
    }

    #[test]
    fn includes_take_subtrees_and_ancestors() {
        use FileType::*;
        let l = listing(&[
            ("a", Dir),
            ("a/b", Dir),
            ("a/b/c.jpg", File),
            ("a/d.txt", File),
            ("e", Dir),
            ("e/f.jpg", File),
        ]);
        let cases: [(&[&str], &[&str]); 4] = [
            (&[], &["a", "a/b", "a/b/c.jpg", "a/d.txt", "e", "e/f.jpg"]),
            (&["a/b"], &["a", "a/b", "a/b/c.jpg"]),
            (&["**/*.jpg"], &["a", "a/b", "a/b/c.jpg", "e", "e/f.jpg"]),
            (&["nothing"], &[]),
        ];
        for (includes, expected) in cases {
            let includes: Vec<String> = includes.iter().map(|s| s.to_string()).collect();
            let got: Vec<&str> = wanted_entries(&l, &includes)
                .unwrap()
                .iter()
                .map(|e| e.path.as_str())
                .collect();
            assert_eq!(got, expected, "{includes:?}");
        }
    }
}
