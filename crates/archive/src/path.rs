use crate::Error;

/// Check that `path` is a relative, `/`-separated path that stays inside its root:
/// not empty, not absolute, no `..`, no `.` or empty components, no NUL byte.
///
/// ```
/// use strongbox_archive::safe_relative_path;
/// assert!(safe_relative_path("a/b.txt").is_ok());
/// assert!(safe_relative_path("../etc/passwd").is_err());
/// assert!(safe_relative_path("/etc/passwd").is_err());
/// ```
pub fn safe_relative_path(path: &str) -> Result<&str, Error> {
    let refuse = |reason| {
        Err(Error::UnsafePath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("empty name");
    }
    if path.starts_with('/') {
        return refuse("absolute path");
    }
    if path.contains('\0') {
        return refuse("NUL byte in name");
    }
    for component in path.split('/') {
        match component {
            ".." => return refuse("parent directory component '..'"),
            "." | "" => return refuse("empty or '.' component"),
            _ => {}
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("a", true)]
    #[case("a/b/c", true)]
    #[case("dir with space/ünïcødé.txt", true)]
    #[case("..a/b..", true)]
    #[case("", false)]
    #[case("/etc/passwd", false)]
    #[case("../x", false)]
    #[case("a/../../x", false)]
    #[case("a/..", false)]
    #[case("./a", false)]
    #[case("a//b", false)]
    #[case("a/", false)]
    #[case("a\0b", false)]
    fn refuses_escaping_names(#[case] path: &str, #[case] ok: bool) {
        assert_eq!(safe_relative_path(path).is_ok(), ok, "{path:?}");
    }
}
