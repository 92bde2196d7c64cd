//! Which entries of a tree a backup takes ([`Excludes`]) and a restore writes ([`Includes`]).

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Error, FileEntry, FileType};

fn glob(pattern: &str) -> Result<Glob, Error> {
    Glob::new(pattern.trim_start_matches("./").trim_end_matches('/')).map_err(|source| {
        Error::InvalidGlob {
            pattern: pattern.to_string(),
            source,
        }
    })
}

fn build<S: AsRef<str>>(builder: GlobSetBuilder, patterns: &[S]) -> Result<GlobSet, Error> {
    builder.build().map_err(|source| Error::InvalidGlob {
        pattern: patterns
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(" "),
        source,
    })
}

/// Exclude patterns: a pattern without `/` matches a name anywhere in the tree
/// (`*.tmp`, `cache`); a pattern with `/` matches the path relative to the backup root
/// (`uploads/tmp/**`). An excluded directory is not descended into.
#[derive(Debug, Clone)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    /// Relative paths left out as they are, not as patterns.
    exact: Vec<String>,
}

impl Excludes {
    /// Exclude nothing.
    pub fn none() -> Self {
        Self {
            names: GlobSet::empty(),
            paths: GlobSet::empty(),
            exact: Vec::new(),
        }
    }

    /// Compile the patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob = glob(pattern)?;
            if glob.glob().contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        Ok(Self {
            names: build(names, patterns)?,
            paths: build(paths, patterns)?,
            exact: Vec::new(),
        })
    }

    /// Also exclude the entry at relative `path` exactly (no pattern characters in it
    /// count), as a backup leaves out a repository that lies inside its tree.
    pub fn and_path(mut self, path: impl Into<String>) -> Self {
        self.exact.push(path.into());
        self
    }

    /// Whether the entry at relative `path` (with final component `name`) is excluded.
    pub fn is_excluded(&self, path: &str, name: &str) -> bool {
        self.names.is_match(name)
            || self.paths.is_match(path)
            || self.exact.iter().any(|p| p == path)
    }
}

/// The directory above `path`, if any.
fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(above, _)| above)
}

/// Include patterns of a partial restore: an entry is selected when it or one of its
/// ancestors matches (`avatars/**`, `**/*.jpg`, `avatars`), and the directories above a
/// selected entry come along. No pattern selects everything.
#[derive(Debug, Clone)]
pub struct Includes {
    set: Option<GlobSet>,
}

impl Includes {
    /// Select everything.
    pub fn all() -> Self {
        Self { set: None }
    }

    /// Compile the patterns; none selects everything.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        if patterns.is_empty() {
            return Ok(Self::all());
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(glob(pattern.as_ref())?);
        }
        Ok(Self {
            set: Some(build(builder, patterns)?),
        })
    }

    /// The selected entries of a tree streamed in listing order (sorted by path), in that
    /// order; the first error of `entries` is returned. Memory holds the directories passed
    /// (an ancestor of an entry selected later comes along) and the selection, not the tree.
    pub fn select<E>(
        &self,
        entries: impl IntoIterator<Item = Result<FileEntry, E>>,
    ) -> Result<Vec<FileEntry>, E> {
        let Some(set) = &self.set else {
            return entries.into_iter().collect();
        };
        let mut selected = Vec::new();
        // Every directory passed: a listing names a directory before what it holds, so an
        // entry below a matched one is known selected with one pattern match, its own.
        let mut dirs: HashMap<String, Dir> = HashMap::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path.as_str();
            let matched = set.is_match(path)
                || parent(path)
                    .and_then(|p| dirs.get(p))
                    .is_some_and(|d| matches!(d, Dir::Matched));
            if !matched {
                if entry.kind == FileType::Dir {
                    dirs.insert(entry.path.clone(), Dir::Passed(entry));
                }
                continue;
            }
            // Its ancestors come along, up to the first one taken already.
            let mut above = parent(path);
            while let Some(dir) = above.and_then(|p| dirs.get_mut(p)) {
                match std::mem::replace(dir, Dir::Taken) {
                    Dir::Passed(ancestor) => selected.push(ancestor),
                    taken => {
                        *dir = taken;
                        break;
                    }
                }
                above = above.and_then(parent);
            }
            if entry.kind == FileType::Dir {
                dirs.insert(entry.path.clone(), Dir::Matched);
            }
            selected.push(entry);
        }
        // An ancestor taken along sorts before its entry but maybe after entries selected
        // before it (`a-b` comes between `a` and `a/c`).
        selected.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Ok(selected)
    }
}

/// A directory [`Includes::select`] has passed.
enum Dir {
    /// Not selected (yet).
    Passed(FileEntry),
    /// Selected as the ancestor of a selected entry.
    Taken,
    /// Selected by a pattern (its own or an ancestor's): so is everything below it.
    Matched,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileType, SnapshotId};
    use rstest::rstest;

    #[rstest]
    #[case("*.tmp", "a/b/c.tmp", true)]
    #[case("*.tmp", "a/b/c.txt", false)]
    #[case("cache", "x/cache", true)]
    #[case("cache", "x/cache2", false)]
    #[case("uploads/tmp/**", "uploads/tmp/a/b", true)]
    #[case("uploads/tmp", "uploads/tmp", true)]
    #[case("uploads/tmp", "other/uploads/tmp", false)]
    #[case("./logs/", "logs", true)]
    // What docs/backup-behaviour.md promises: `*` crosses `/` in a path pattern, `dir/**`
    // keeps the directory itself, a trailing `/` makes a name pattern.
    #[case("uploads/*.jpg", "uploads/2026/a.jpg", true)]
    #[case("uploads/*.jpg", "x/uploads/a.jpg", false)]
    #[case("uploads/**", "uploads", false)]
    #[case("cache/", "x/y/cache", true)]
    fn matches_names_and_paths(#[case] pattern: &str, #[case] path: &str, #[case] hit: bool) {
        let ex = Excludes::new(&[pattern]).unwrap();
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(ex.is_excluded(path, name), hit);
    }

    #[rstest]
    #[case("backups/repo", true)]
    #[case("backups", false)]
    #[case("backups/repo2", false)]
    #[case("other/backups/repo", false)]
    #[case("repo", false)]
    #[case("[r]", false)]
    fn an_exact_path_excludes_that_entry_only(#[case] path: &str, #[case] hit: bool) {
        let ex = Excludes::new(&["*.tmp"]).unwrap().and_path("backups/repo");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(ex.is_excluded(path, name), hit);
        let literal = Excludes::none().and_path("[r]");
        assert_eq!(literal.is_excluded(path, name), path == "[r]");
    }

    #[test]
    fn invalid_glob_names_the_pattern() {
        let err = Excludes::new(&["a[b"]).unwrap_err();
        assert!(err.to_string().contains("\"a[b\""), "{err}");
    }

    fn entries(paths: &[(&str, FileType)]) -> Vec<FileEntry> {
        let holder = SnapshotId::parse("20250101T000000Z-000000").unwrap();
        paths
            .iter()
            .map(|(p, k)| FileEntry {
                path: p.to_string(),
                kind: *k,
                size: 1,
                mode: 0o644,
                uid: None,
                gid: None,
                mtime: 0,
                sha256: None,
                target: None,
                holder: Some(holder.clone()),
                offset: None,
                ctime: 0,
                inode: 0,
            })
            .collect()
    }

    #[test]
    fn includes_take_subtrees_and_ancestors_in_listing_order() {
        use FileType::*;
        let tree = entries(&[
            ("a", Dir),
            ("a-b", File),
            ("a/b", Dir),
            ("a/b/c.jpg", File),
            ("a/d.txt", File),
            ("e", Dir),
            ("e/f.jpg", File),
        ]);
        let cases: [(&[&str], &[&str]); 7] = [
            (
                &[],
                &["a", "a-b", "a/b", "a/b/c.jpg", "a/d.txt", "e", "e/f.jpg"],
            ),
            (&["a/b"], &["a", "a/b", "a/b/c.jpg"]),
            (&["./a/b/"], &["a", "a/b", "a/b/c.jpg"]),
            (&["**/*.jpg"], &["a", "a/b", "a/b/c.jpg", "e", "e/f.jpg"]),
            // `a` comes along after `a-b` was taken, and goes back before it.
            (&["a-b", "a/d.txt"], &["a", "a-b", "a/d.txt"]),
            (&["a"], &["a", "a/b", "a/b/c.jpg", "a/d.txt"]),
            (&["nothing"], &[]),
        ];
        for (patterns, expected) in cases {
            let selected = Includes::new(patterns)
                .unwrap()
                .select(tree.iter().cloned().map(Ok::<_, ()>))
                .unwrap();
            let got: Vec<&str> = selected.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(got, expected, "{patterns:?}");
        }
    }

    #[test]
    fn invalid_include_names_the_pattern() {
        let err = Includes::new(&["ok/**", "a[b"]).unwrap_err();
        assert!(err.to_string().contains("\"a[b\""), "{err}");
    }
}
