//! The Debian package: built by scripts/package.sh from the binary under test, installed
//! with dpkg on this machine (root, as CI is), checked as an operator would, removed.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::bin;
use crate::operations::systemd_analyze;

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Root and dpkg, or a skip (a failure under CI=true, which runs as root on Debian).
fn can_install() -> bool {
    let root = rustix::process::geteuid().is_root();
    let dpkg = Command::new("dpkg").arg("--version").output().is_ok();
    if root && dpkg {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true runs as root with dpkg: the package test cannot be skipped"
    );
    eprintln!("skipping: installing a package needs root and dpkg");
    false
}

#[test]
fn the_debian_package_installs_man_pages_completions_units_and_keeps_its_config_on_removal() {
    if !can_install() {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = Command::new(root.join("scripts/package.sh"))
        .env("STRONGBOX_BINARY", bin())
        .env("PACKAGE_OUT", out_dir.path())
        .output()
        .unwrap();
    let deb = ok(&built, "scripts/package.sh").trim().to_string();
    assert!(
        deb.ends_with(&format!(
            "strongbox_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            ok(&sh("dpkg", &["--print-architecture"]), "arch").trim()
        )),
        "{deb}"
    );
    let contents = ok(
        &sh("dpkg-deb", &["--contents", &deb]),
        "dpkg-deb --contents",
    );
    for path in [
        "./usr/bin/strongbox",
        "./usr/share/man/man1/strongbox.1.gz",
        "./usr/share/man/man1/strongbox-backup-files.1.gz",
        "./usr/share/bash-completion/completions/strongbox",
        "./usr/share/zsh/vendor-completions/_strongbox",
        "./usr/share/fish/vendor_completions.d/strongbox.fish",
        "./etc/strongbox/strongbox.toml",
        "./lib/systemd/system/strongbox-backup@.timer",
        "./usr/share/doc/strongbox/operations.md",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    // Never touch a strongbox the machine really has installed (or its configuration).
    if sh("dpkg", &["--status", "strongbox"]).status.success() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a strongbox package is installed on this CI machine already; remove it first"
        );
        eprintln!("skipping: a strongbox package is installed here; not replacing it");
        return;
    }
    ok(&sh("dpkg", &["-i", &deb]), "dpkg -i");
    let version = ok(
        &sh("/usr/bin/strongbox", &["--version"]),
        "strongbox --version",
    );
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains("commit"),
        "{version}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &sh("/usr/bin/strongbox", &["--version", "--json"]),
        "--version --json",
    ))
    .unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let page = Command::new("man")
        .args(["-l", "/usr/share/man/man1/strongbox-restore.1.gz"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let page = ok(&page, "man -l");
    assert!(
        page.contains("strongbox-restore") && page.contains("--target"),
        "{page}"
    );
    ok(
        &sh(
            "bash",
            &[
                "-c",
                "source /usr/share/bash-completion/completions/strongbox && complete -p strongbox",
            ],
        ),
        "the bash completion loads",
    );
    let config = "/etc/strongbox/strongbox.toml";
    let mode = std::fs::metadata(config).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    ok(
        &sh(
            "/usr/bin/strongbox",
            &["--config", config, "config", "check"],
        ),
        "config check of the example",
    );
    if let Some(out) = systemd_analyze(&[
        "verify",
        "/lib/systemd/system/strongbox-backup@media.service",
        "/lib/systemd/system/strongbox-backup@media.timer",
        "/lib/systemd/system/strongbox-verify@media.timer",
        "/lib/systemd/system/strongbox-prune@media.timer",
    ]) {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    ok(&sh("dpkg", &["--remove", "strongbox"]), "dpkg --remove");
    assert!(!Path::new("/usr/bin/strongbox").exists(), "removed");
    assert!(
        Path::new(config).exists(),
        "removal keeps the configuration"
    );
    ok(&sh("dpkg", &["--purge", "strongbox"]), "dpkg --purge");
    assert!(!Path::new(config).exists(), "purge removes it");
}
