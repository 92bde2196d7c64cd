use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::Utc;
use rustix::fs::{AtFlags, Gid, Uid};
use strongbox_archive::read_full;
use strongbox_manifest::{FileEntry, FileType, Listing, RootDir, Snapshot, SourceKind, Stats};

use super::owners::Owners;
use super::{resolved, RestoreDetail, RestorePlan, RestoreRun, Restored, Restorer};
use crate::progress::Tracked;
use crate::remove_tree::{left_by_gone_processes, remove_left_over, remove_tree};
use crate::tree::TreeEntry;
use crate::Error;

const CHUNK: usize = 1024 * 1024;
/// What each entry may take beyond its bytes (a block of metadata or of a partly filled
/// last block), for the free-space check.
const BLOCK: u64 = 4096;
const HOLE: usize = 64 * 1024;

/// A directory to restore a files snapshot into. The tree is extracted into a staging
/// directory beside it, every file checked against its digest, modes and times applied,
/// and then swapped in; the replaced tree is kept as `<target>.pre-restore-<time>`
/// (unless `keep_previous` is off). Any failure before the swap leaves the target as it
/// was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTarget {
    /// The directory (replaced as a whole).
    pub path: PathBuf,
    /// Restore only entries matching these globs (and everything below a matching
    /// directory); all when empty.
    pub includes: Vec<String>,
    /// Keep the replaced tree as `<target>.pre-restore-<time>`.
    pub keep_previous: bool,
}

impl DirectoryTarget {
    /// The whole snapshot into `path`, keeping a replaced tree.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirectoryTarget {
            path: path.into(),
            includes: Vec::new(),
            keep_previous: true,
        }
    }

    /// The target as the restore will reach it (see [`resolved`]).
    fn absolute(&self) -> Result<PathBuf, Error> {
        let absolute =
            std::path::absolute(&self.path).map_err(|e| Error::io("resolving", &self.path, e))?;
        Ok(resolved(&absolute))
    }
}

/// Put the staging tree in `target`'s place; the old tree goes to `aside` when `keep`, else
/// it is removed. One atomic exchange where the file system has it, so that a kill at any
/// moment leaves the target either as it was or complete (the old tree then waits at the
/// staging name, which the next restore clears); else two renames, undone if the second
/// fails. Returns where the old tree was kept.
fn swap(
    staging: &mut Staging,
    target: &Path,
    aside: &Path,
    keep: bool,
) -> Result<Option<PathBuf>, Error> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let exchanged = renameat_with(CWD, &staging.path, CWD, target, RenameFlags::EXCHANGE);
    let old = match exchanged {
        // The staging name holds the old tree now.
        Ok(()) if !keep => staging.path.clone(),
        Ok(()) => {
            staging.armed = false;
            return match fs::rename(&staging.path, aside) {
                Ok(()) => Ok(Some(aside.to_path_buf())),
                Err(e) => {
                    tracing::warn!(old = %staging.path.display(), error = %e, "the replaced tree stays at its staging name");
                    Ok(Some(staging.path.clone()))
                }
            };
        }
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            fs::rename(target, aside).map_err(|e| Error::io("moving aside", target, e))?;
            if let Err(e) = fs::rename(&staging.path, target) {
                // Put the old target back; the staging dir is removed by its guard.
                let _ = fs::rename(aside, target);
                return Err(Error::io("moving the restored tree to", target, e));
            }
            if keep {
                staging.armed = false;
                return Ok(Some(aside.to_path_buf()));
            }
            aside.to_path_buf()
        }
        Err(e) => return Err(Error::io("moving the restored tree to", target, e.into())),
    };
    // Restored: a tree that will not go away is worth a warning, not a failure.
    staging.armed = false;
    if let Err(e) = remove_tree(&old) {
        tracing::warn!(old = %old.display(), error = %e, "could not remove the replaced tree");
    }
    Ok(None)
}

/// A file in a staging directory while it holds a tree being restored, removed just before
/// the swap: a staging directory without it, left by a kill, holds the replaced tree.
const STAGING_MARK: &str = ".strongbox-restore-staging";

/// Clear what restores into `name` that were killed left in `parent` (their process, the pid
/// in the name, gone from this host): a half-restored tree is removed; a replaced tree
/// (killed between the swap and moving it aside) is kept as `<name>.pre-restore-<time>`.
fn remove_stale_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.strongbox-restore-");
    let staging = |file_name: &str| {
        let pid = file_name
            .strip_prefix(&prefix)?
            .split('-')
            .next()?
            .parse()
            .ok()?;
        Some((pid, strongbox_storage::host_name()))
    };
    for path in left_by_gone_processes(parent, staging) {
        if path.join(STAGING_MARK).exists() {
            remove_left_over(&path, "the staging directory of a restore that was killed");
            continue;
        }
        let aside = parent.join(format!(
            "{name}.pre-restore-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        match fs::rename(&path, &aside) {
            Ok(()) => {
                tracing::warn!(path = %aside.display(), "kept the tree a killed restore had replaced")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not move aside the tree a killed restore had replaced")
            }
        }
    }
}

/// Refuse a restore whose staging copy beside `target` would not fit in the free space of
/// `parent`'s file system: better said now, with the numbers, than found half-way.
fn check_space(parent: &Path, target: &Path, needed: u64) -> Result<(), Error> {
    let stats = rustix::fs::statvfs(parent)
        .map_err(|e| Error::io("reading the free space of", parent, e.into()))?;
    let available = stats.f_bavail.saturating_mul(stats.f_frsize);
    if available < needed {
        return Err(Error::NoSpace {
            target: target.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Removes the staging directory unless the restore swapped it in.
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the staging directory");
            }
        }
    }
}

impl Restorer for DirectoryTarget {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    fn describe(&self) -> String {
        self.absolute()
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    fn is_empty(&mut self) -> Result<bool, Error> {
        let target = self.absolute()?;
        match fs::symlink_metadata(&target) {
            Ok(meta) if !meta.is_dir() => Err(Error::TargetNotDirectory { path: target }),
            Ok(_) => match fs::read_dir(&target) {
                Ok(mut contents) => Ok(contents.next().is_none()),
                // Not known to be empty (a restored root of mode 0300 its owner may not
                // read): replaced whole with --force, as any tree that holds data.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(false),
                Err(e) => Err(Error::io("reading", &target, e)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io("reading", &target, e)),
        }
    }

    fn reaches(&self, dir: &Path) -> Result<bool, Error> {
        let (target, dir) = (self.absolute()?, resolved(dir));
        Ok(target.starts_with(&dir) || dir.starts_with(&target))
    }

    fn replaced(&self) -> String {
        format!(
            "the current content is kept as {}.pre-restore-<time>",
            self.describe()
        )
    }

    fn restore(&mut self, run: &mut RestoreRun<'_>) -> Result<Restored, Error> {
        let target = self.absolute()?;
        // A whole restore streams the listing beside the archives; a partial one holds the
        // entries it selects as the listing streams by.
        let selected = match self.includes.is_empty() {
            true => None,
            false => {
                let snapshot = run.objects.snapshot();
                let entries =
                    crate::select::included(snapshot, &self.includes, run.objects.entries()?)?;
                Some(Listing::new(snapshot.id.clone(), entries))
            }
        };
        let (bytes, entries) = match &selected {
            Some(listing) => (
                listing.entries.iter().map(|e| e.size).sum(),
                listing.entries.len() as u64,
            ),
            None => totals(run.objects.snapshot()),
        };

        let parent = target.parent().unwrap_or(Path::new("/"));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        check_space(parent, &target, bytes + BLOCK * entries)?;
        remove_stale_staging(parent, &name);
        let staging_path = parent.join(format!(
            ".{name}.strongbox-restore-{}-{:08x}",
            std::process::id(),
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
        let mark = staging_path.join(STAGING_MARK);
        fs::write(&mark, b"").map_err(|e| Error::io("creating", &mark, e))?;

        let mut tree = Skeleton {
            root: &staging_path,
            plan: RestorePlan::empty(run.objects.snapshot()),
            dirs: Vec::new(),
            links: Vec::new(),
        };
        run.progress().phase("restoring", Some(bytes));
        let mut buf = vec![0u8; CHUNK];
        let (progress, cancel) = (run.progress(), run.cancel());
        let mut owners = Owners::for_tree(&staging_path)
            .map_err(|e| Error::io("reading the owner of", &staging_path, e))?;
        let write = |item: TreeEntry<'_>| {
            cancel.check()?;
            if item.entry.kind != FileType::File {
                return Ok(());
            }
            let path = staging_path.join(&item.entry.path);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io("creating", &path, e))?;
            let mut data = Tracked {
                inner: item.data,
                progress,
                cancel,
                error: None,
            };
            let written = write_sparse(&mut file, &mut data, item.entry.size, &mut buf);
            if let Some(source) = data.error {
                return Err(cancel.or_cancelled(Error::EntryData {
                    key: item.archive_key.to_string(),
                    path: item.entry.path.clone(),
                    source,
                }));
            }
            written.map_err(|e| Error::io("writing", &path, e))?;
            // Through the open descriptor: no second and third lookup of the path.
            let mode = owners.give(item.entry, &path, |uid, gid| {
                rustix::fs::fchown(&file, uid, gid)
            });
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("setting mode of", &path, e))?;
            rustix::fs::futimens(&file, &timestamps(item.entry.mtime))
                .map_err(|e| Error::io("setting time of", &path, e.into()))
        };
        match &selected {
            Some(listing) => {
                for entry in &listing.entries {
                    tree.add(entry)?;
                }
                run.objects.read_files(listing, write)
            }
            None => run.objects.read_all(|entry| tree.add(entry), write),
        }
        .map_err(|e| cancel.or_cancelled(e))?;
        run.progress().finish();
        run.cancel().check()?;

        // Files got their mode and times as each was written; links come last, so that no
        // write ever passed through one this restore created.
        for link in &tree.links {
            let path = staging_path.join(&link.path);
            let target = link.target.as_deref().unwrap_or_default();
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| Error::io("creating link", &path, e))?;
            owners.give(link, &path, |uid, gid| chown_here(&path, uid, gid));
            set_mtime(&path, link.mtime, false)
                .map_err(|e| Error::io("setting time of", &path, e))?;
        }
        // Deepest directories first, so that setting a parent's mtime is the last touch.
        for dir in tree.dirs.iter().rev() {
            let path = staging_path.join(&dir.path);
            let mode = owners.give(dir, &path, |uid, gid| chown_here(&path, uid, gid));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("setting mode of", &path, e))?;
            set_mtime(&path, dir.mtime, true)
                .map_err(|e| Error::io("setting time of", &path, e))?;
        }
        run.cancel().check()?;

        fs::remove_file(&mark).map_err(|e| Error::io("removing", &mark, e))?;
        // The target becomes the backed-up directory, as tar's `./` entry makes it: a
        // private tree (0700, its service's) must not come back open to every user.
        let root = run.objects.snapshot().file_stats().and_then(|s| s.root);
        let mode = match root {
            Some(root) => owners.give(&root_entry(root), &staging_path, |uid, gid| {
                chown_here(&staging_path, uid, gid)
            }),
            // A record from before the directory was kept: the target's own mode, if any.
            None => fs::metadata(&target).map_or(0o755, |m| m.permissions().mode()),
        };
        fs::set_permissions(&staging_path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("setting mode of", &staging_path, e))?;
        if let Some(root) = root {
            set_mtime(&staging_path, root.mtime, true)
                .map_err(|e| Error::io("setting time of", &staging_path, e))?;
        }
        owners.report();
        // Replaced only when the caller was told it holds data (`force`); else a plain rename,
        // which takes the place of an empty directory only, whatever appeared there since.
        let previous = if run.replace {
            let aside = parent.join(format!(
                "{name}.pre-restore-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            ));
            swap(&mut staging, &target, &aside, self.keep_previous)?
        } else {
            fs::rename(&staging_path, &target)
                .map_err(|e| Error::io("moving the restored tree to", &target, e))?;
            None
        };
        staging.armed = false;
        Ok(Restored {
            previous,
            detail: RestoreDetail::Plan(tree.plan),
        })
    }
}

/// Bytes and entries of a snapshot's whole tree, as its record counts them.
fn totals(snapshot: &Snapshot) -> (u64, u64) {
    match &snapshot.stats {
        Stats::Files(stats) => (stats.bytes, stats.files + stats.dirs + stats.symlinks),
        _ => (0, 0),
    }
}

/// What a restore writes besides file content, gathered as the listing goes by:
/// directories are created at once (owner-writable until the end, each after its parent),
/// their modes and times and the links are applied after the files.
struct Skeleton<'a> {
    root: &'a Path,
    plan: RestorePlan,
    dirs: Vec<FileEntry>,
    links: Vec<FileEntry>,
}

impl Skeleton<'_> {
    fn add(&mut self, entry: &FileEntry) -> Result<(), Error> {
        self.plan.add(entry);
        match entry.kind {
            FileType::Dir => {
                let path = self.root.join(&entry.path);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| Error::io("creating", &path, e))?;
                self.dirs.push(entry.clone());
            }
            FileType::Symlink => self.links.push(entry.clone()),
            FileType::File => {}
        }
        Ok(())
    }
}

/// The backed-up directory as an entry of its own tree, for [`Owners::give`].
fn root_entry(root: RootDir) -> FileEntry {
    FileEntry {
        path: String::new(),
        kind: FileType::Dir,
        size: 0,
        mode: root.mode,
        uid: Some(root.uid),
        gid: Some(root.gid),
        mtime: root.mtime,
        sha256: None,
        target: None,
        holder: None,
        offset: None,
        ctime: 0,
        inode: 0,
    }
}

/// Access and modification time `ns` (nanoseconds since the epoch, maybe before it).
fn timestamps(ns: i64) -> rustix::fs::Timestamps {
    let time = rustix::fs::Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    };
    rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn set_mtime(path: &Path, ns: i64, follow: bool) -> std::io::Result<()> {
    let times = timestamps(ns);
    let flags = if follow {
        rustix::fs::AtFlags::empty()
    } else {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, flags).map_err(std::io::Error::from)
}

/// Give `path` itself (a link, not what it points to) the owner `uid`, `gid`.
fn chown_here(path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> rustix::io::Result<()> {
    rustix::fs::chownat(rustix::fs::CWD, path, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
}

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
