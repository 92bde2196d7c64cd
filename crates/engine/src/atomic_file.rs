//! Files other programs read while strongbox rewrites them: metrics, the status page,
//! installed schedules.

use std::ffi;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Write `path` through a temporary file beside it and a rename, so that a reader (a
/// metrics collector, cron, systemd) never sees half a file. A new file gets the process's
/// umask (the CLI's makes it private); one that exists keeps its mode, so a file made
/// readable for node_exporter or a web server stays readable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| ffi::OsString::from("metrics"), ffi::OsStr::to_os_string);
    let mut temp_name = ffi::OsString::from(".");
    temp_name.push(&name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            if let Ok(existing) = fs::metadata(path) {
                file.set_permissions(existing.permissions())?;
            }
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_rewrite_replaces_the_whole_file_keeps_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strongbox.prom");
        write_atomically(&path, b"first, longer content\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"second\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["strongbox.prom"]);
        let missing = dir.path().join("no-such-dir/x");
        assert!(write_atomically(&missing, b"x").is_err());
    }
}
