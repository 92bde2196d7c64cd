use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::Error;

/// Exclude patterns: a pattern without `/` matches a name anywhere in the tree
/// (`*.tmp`, `cache`); a pattern with `/` matches the path relative to the backup root
/// (`uploads/tmp/**`). An excluded directory is not descended into.
#[derive(Debug, Clone)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    /// Exclude nothing.
    pub fn none() -> Self {
        Self {
            names: GlobSet::empty(),
            paths: GlobSet::empty(),
        }
    }

    /// Compile the patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let trimmed = pattern.trim_start_matches("./").trim_end_matches('/');
            let glob = Glob::new(trimmed).map_err(|source| Error::InvalidGlob {
                pattern: pattern.to_string(),
                source,
            })?;
            if trimmed.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |builder: GlobSetBuilder, pattern: &str| {
            builder.build().map_err(|source| Error::InvalidGlob {
                pattern: pattern.to_string(),
                source,
            })
        };
        Ok(Self {
            names: build(names, "<names>")?,
            paths: build(paths, "<paths>")?,
        })
    }

    /// Whether the entry at relative `path` (with final component `name`) is excluded.
    pub fn is_excluded(&self, path: &str, name: &str) -> bool {
        self.names.is_match(name) || self.paths.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn matches_names_and_paths(#[case] pattern: &str, #[case] path: &str, #[case] hit: bool) {
        let ex = Excludes::new(&[pattern]).unwrap();
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(ex.is_excluded(path, name), hit);
    }

    #[test]
    fn invalid_glob_names_the_pattern() {
        let err = Excludes::new(&["a[b"]).unwrap_err();
        assert!(err.to_string().contains("\"a[b\""), "{err}");
    }
}
