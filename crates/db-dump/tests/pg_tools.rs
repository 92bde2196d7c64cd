//! Missing, old and failing PostgreSQL client tools. PATH is process-wide, so this binary
//! holds one test that changes it step by step.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use strongbox_test_support::chain;

use common::{exec, pg_base, TestDb};
use strongbox_db_dump::{
    verify_dump, DatabaseSource, DatabaseTarget, Error, PostgresSource, PostgresTarget,
};
use strongbox_manifest::SourceKind;

fn fake_tool(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn missing_old_and_failing_tools_give_clear_errors() {
    let Some(base) = pg_base() else { return };
    let password = common::base_password(&base);
    let db = TestDb::create(&base, "tools");
    exec(
        &db.url(),
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1);",
    );
    let bin = tempfile::tempdir().unwrap();
    // Only this directory (and /bin for sh) is searched from here on.
    std::env::set_var("PATH", bin.path());

    let err = PostgresSource::new(&db.url())
        .unwrap()
        .dump(&mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ToolMissing {
                tool: "pg_dump",
                ..
            }
        ),
        "{err}"
    );
    let text = chain(&err);
    assert!(text.starts_with("pg_dump not found on PATH"), "{text}");
    assert!(text.contains(&db.name), "{text}");
    assert!(!text.contains(&password), "{text}");

    let target = TestDb::named(&base, "tools_dst");
    let err = PostgresTarget::new(&target.url())
        .unwrap()
        .restore(&mut &b"PGDMP"[..], &Default::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ToolMissing {
                tool: "pg_restore",
                ..
            }
        ),
        "{err}"
    );
    assert!(!target.exists(), "nothing is created without pg_restore");
    let err = verify_dump(SourceKind::Postgres, &mut &b"PGDMP"[..]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ToolMissing {
                tool: "pg_restore",
                ..
            }
        ),
        "{err}"
    );

    // A pg_dump older than the server is refused before it runs.
    fake_tool(
        bin.path(),
        "pg_dump",
        "[ \"$1\" = --version ] && echo 'pg_dump (PostgreSQL) 9.6.24' && exit 0\necho ran >&2; exit 1",
    );
    let err = PostgresSource::new(&db.url())
        .unwrap()
        .dump(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::ToolTooOld { .. }), "{err}");
    let text = chain(&err);
    assert!(
        text.starts_with("pg_dump 9.6.24 is older than the server"),
        "{text}"
    );
    assert!(text.contains(&db.name), "{text}");

    // A failing pg_dump: its exit status and stderr are the error; the password is not.
    fake_tool(
        bin.path(),
        "pg_dump",
        "[ \"$1\" = --version ] && echo 'pg_dump (PostgreSQL) 99.0' && exit 0\n\
         printf PGDMP; echo \"pg_dump: error: simulated failure (pw $PGPASSWORD)\" >&2; exit 3",
    );
    let err = PostgresSource::new(&db.url())
        .unwrap()
        .dump(&mut Vec::new())
        .unwrap_err();
    let text = chain(&err);
    assert!(
        matches!(
            err,
            Error::ToolFailed {
                tool: "pg_dump",
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("simulated failure (pw ***)"), "{text}");
    assert!(!text.contains(&password), "{text}");

    // The password reaches pg_dump through the environment only, never its arguments.
    fake_tool(
        bin.path(),
        "pg_dump",
        "[ \"$1\" = --version ] && echo 'pg_dump (PostgreSQL) 99.0' && exit 0\n\
         case \"$*\" in *\"$PGPASSWORD\"*) echo 'password in arguments' >&2; exit 9;; esac\n\
         [ -n \"$PGPASSWORD\" ] || { echo 'no PGPASSWORD' >&2; exit 8; }\n\
         printf 'not a custom-format archive'",
    );
    let err = PostgresSource::new(&db.url())
        .unwrap()
        .dump(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::BadDump { .. }), "{err}");
    assert!(chain(&err).contains("not a custom-format archive"), "{err}");
}
