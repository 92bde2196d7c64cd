//! Bundles: a database and the media its rows reference, backed up under one record with
//! the references cross-checked, restored together, protected from member prunes; and the
//! bad bundles refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use strongbox_test_support::Pg;

use crate::harness::{assert_same_tree, names, succeeded, tree, write, Env};

/// `strongbox --repo R --config C <args>` with libpq's variables when `pg` is given.
fn run(env: &Env, config: &Path, pg: Option<&Pg>, args: &[&str]) -> Output {
    let config = config.display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    if let Some(pg) = pg {
        cmd.envs(pg.env());
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A configuration with a files set `media` of `media` and a bundle `platform` of it.
fn media_bundle(env: &Env, media: &Path) -> PathBuf {
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            "[sets.media]\nsource = \"files\"\npath = \"{}\"\n\
             [sets.platform]\nsource = \"bundle\"\nmembers = [\"media\"]\n",
            media.display()
        ),
    )
    .unwrap();
    config
}

/// An SQLite database `app.sqlite3` whose one row references `avatars/1.jpg`.
fn app_db(env: &Env) -> PathBuf {
    let db = env.path("app.sqlite3");
    crate::harness::sqlite(
        &db,
        "CREATE TABLE uploads (path); INSERT INTO uploads VALUES ('avatars/1.jpg');",
    );
    db
}

fn media(env: &Env) -> PathBuf {
    let media = env.path("media");
    write(&media.join("avatars/1.jpg"), b"one");
    write(&media.join("avatars/2.png"), b"two");
    write(&media.join("orphan.txt"), b"nobody");
    media
}

#[test]
fn a_bundle_takes_postgres_and_media_together_checks_references_and_restores_both() {
    let Some(pg) = Pg::get() else { return };
    let db = pg.create("bundle");
    db.psql(
        "CREATE EXTENSION citext;
         CREATE TABLE uploads (id serial PRIMARY KEY, path text NOT NULL);
         INSERT INTO uploads (path) VALUES ('media/avatars/1.jpg'), ('media/avatars/2.png'),
             ('media/avatars/gone.jpg'), ('media/avatars/1.jpg');",
    );
    let env = Env::new();
    let media = media(&env);
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"[sets.maindb]
source = "postgres"
conninfo = "{db}"
[sets.media]
source = "files"
path = "{media}"
[sets.platform]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT path FROM uploads", files = "media", prefix = "media/" }}
[sets.broken]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT no_such_column FROM uploads", files = "media" }}
[sets.two-columns]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT path, id FROM uploads", files = "media" }}
[sets.fixed-width]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT path::char(40) FROM uploads", files = "media", prefix = "media/" }}
[sets.as-name]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT path::name FROM uploads", files = "media", prefix = "media/" }}
[sets.as-citext]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT path::citext FROM uploads", files = "media", prefix = "media/" }}
[sets.a-number]
source = "bundle"
members = ["maindb", "media"]
references = {{ database = "maindb", query = "SELECT id FROM uploads", files = "media", prefix = "media/" }}
"#,
            db = db.url_without_password(),
            media = media.display()
        ),
    )
    .unwrap();

    let out = run(&env, &config, Some(&pg), &["backup", "platform", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "missing files warn, never fail: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("avatars/gone.jpg"),
        "{}",
        stderr(&out)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["source"], "bundle");
    let refs = &record["stats"]["references"];
    assert_eq!(refs["checked"], 3, "{refs}");
    assert_eq!(refs["missing"], serde_json::json!(["avatars/gone.jpg"]));
    assert_eq!(refs["missing_count"], 1);
    assert_eq!(refs["orphans"], serde_json::json!(["orphan.txt"]));
    let point = &record["restore_point"];
    assert_eq!(
        point["name"],
        format!("strongbox-{}", record["id"].as_str().unwrap())
    );
    assert!(point["lsn"].as_str().unwrap().contains('/'), "{point}");
    let members = record["members"].as_object().unwrap();
    for set in ["maindb", "media"] {
        let snapshots = succeeded(&run(&env, &config, None, &["snapshots", set, "--json"]));
        assert_eq!(snapshots[0]["id"], members[set], "{set}: {snapshots}");
        // Each member's own journal has the run, for its status and health.
        let status = succeeded(&run(&env, &config, None, &["status", set, "--json"]));
        let last = &status[0]["last_runs"]["backup"];
        assert_eq!(last["snapshot"], members[set], "{set}: {status:#}");
        assert_eq!(last["status"], "ok", "{set}: {status:#}");
    }

    // Health names the missing file; verify checks every member.
    let out = run(
        &env,
        &config,
        None,
        &[
            "health",
            "--set",
            "platform",
            "--json",
            "--max-disk-usage",
            "100",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = crate::harness::named_check(&report["checks"], "references");
    assert_eq!(check["status"], "warning");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("avatars/gone.jpg"),
        "{check}"
    );
    let scratch = pg.url("postgres");
    let scratch_dir = env.path("").display().to_string();
    let verify = [
        "verify",
        "platform:latest",
        "--level",
        "restore",
        "--scratch-postgres",
        &scratch,
        "--scratch-dir",
        &scratch_dir,
        "--json",
    ];
    let verified = succeeded(&run(&env, &config, Some(&pg), &verify));
    let reports = verified["snapshots"].as_array().unwrap();
    assert_eq!(reports.len(), 3, "{verified:#}");
    // The restore test of the database re-ran the reference query on its restored copy.
    let db_report = reports
        .iter()
        .find(|r| r["id"] == members["maindb"])
        .unwrap();
    let recheck = crate::harness::named_check(&db_report["checks"], "references");
    assert_eq!(recheck["ok"], true, "{recheck}");
    let detail = recheck["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 referenced, 1 missing, 1 orphan(s) on the restored copy, as recorded"),
        "{detail}"
    );

    // Restore both, exactly.
    let target_db = pg.name("bundle_restored");
    let target_dir = env.path("restored-media");
    let db_target = format!("maindb={}", target_db.url_without_password());
    let dir_target = format!("media={}", target_dir.display());
    let missing = run(
        &env,
        &config,
        Some(&pg),
        &["restore", "platform:latest", "--target", &db_target],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("member \"media\" has no target"),
        "{}",
        stderr(&missing)
    );
    assert!(
        !target_dir.exists(),
        "nothing is written before every target is known"
    );
    succeeded(&run(
        &env,
        &config,
        Some(&pg),
        &[
            "restore",
            "platform:latest",
            "--target",
            &db_target,
            "--target",
            &dir_target,
            "--json",
        ],
    ));
    let rows = "SELECT string_agg(id || ':' || path, ',' ORDER BY id) FROM uploads";
    assert_eq!(target_db.psql(rows), db.psql(rows));
    assert_same_tree(&tree(&media), &tree(&target_dir));

    // A member prune keeps what a bundle names.
    succeeded(&run(
        &env,
        &config,
        Some(&pg),
        &["backup", "maindb", "--json"],
    ));
    let plan = succeeded(&run(
        &env,
        &config,
        None,
        &["prune", "maindb", "--keep-last", "1", "--dry-run", "--json"],
    ));
    let kept: Vec<&Value> = plan["keep"].as_array().unwrap().iter().collect();
    let by_bundle = kept
        .iter()
        .find(|k| k["id"] == members["maindb"])
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert!(
        by_bundle["reasons"].to_string().contains("bundle platform"),
        "{by_bundle}"
    );

    // A failing reference query fails the backup, names the database, not its password,
    // and leaves no snapshot behind. A second column used to pass unseen, and a number
    // failed as "function substr(integer, integer, integer) does not exist".
    let before = succeeded(&run(&env, &config, None, &["snapshots", "--json"]));
    for (set, expected) in [
        ("broken", "no_such_column"),
        (
            "two-columns",
            "returns 2 columns (path, id); it must return one, the path",
        ),
        (
            "a-number",
            "returns a int4 column (id); it must return text",
        ),
    ] {
        let out = run(&env, &config, Some(&pg), &["backup", set]);
        assert_eq!(out.status.code(), Some(1), "{set}");
        let message = stderr(&out);
        assert!(
            message.contains(&db.name) && message.contains(expected),
            "{set}: {message}"
        );
        assert!(!message.contains(pg.password()), "{message}");
        assert_eq!(
            succeeded(&run(&env, &config, None, &["snapshots", "--json"])),
            before,
            "{set}"
        );
    }

    // Paths come as any of PostgreSQL's text types: the references are the platform's. A
    // char(n) column's were all missing once its rows came back as stored, padded.
    for set in ["fixed-width", "as-name", "as-citext"] {
        let record = succeeded(&run(&env, &config, Some(&pg), &["backup", set, "--json"]));
        let refs = &record["stats"]["references"];
        assert_eq!(refs["checked"], 3, "{set}: {refs}");
        assert_eq!(
            refs["missing"],
            serde_json::json!(["avatars/gone.jpg"]),
            "{set}"
        );
    }
}

#[test]
fn bad_bundles_are_refused_naming_the_set_and_write_nothing() {
    let env = Env::new();
    let (media, db) = (media(&env), app_db(&env));
    let sets = format!(
        "[sets.appdb]\nsource = \"sqlite\"\npath = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\n\
         [sets.pgbase]\nsource = \"postgres\"\nconninfo = \"host=127.0.0.1 dbname=app\"\nphysical = true\n",
        db.display(),
        media.display()
    );
    let config = env.path("strongbox.toml");
    // Refused when the configuration is read.
    for (bundle, expected) in [
        ("members = [\"appdb\", \"nope\"]", "set \"platform\" has member \"nope\", which is not a configured set"),
        ("members = [\"appdb\", \"platform\"]", "set \"platform\" is a member of itself"),
        // It backed up, and then no restore of the bundle could take it.
        ("members = [\"pgbase\", \"media\"]", "has member \"pgbase\", a base backup (physical = true)"),
        (
            "members = [\"appdb\", \"media\"]\nreferences = { database = \"media\", query = \"SELECT 1\", files = \"media\" }",
            "has references.database \"media\", which is not a PostgreSQL or SQLite member",
        ),
    ] {
        std::fs::write(&config, format!("{sets}[sets.platform]\nsource = \"bundle\"\n{bundle}\n")).unwrap();
        let out = run(&env, &config, None, &["backup", "platform"]);
        assert_eq!(out.status.code(), Some(2), "{bundle}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{bundle}: {}", stderr(&out));
    }
    // Refused by the query's rows, inside the dump: the backup fails and no set gets a
    // snapshot.
    for (query, expected) in [
        (
            "SELECT 42",
            "returned a value of type integer; it must return text",
        ),
        (
            "SELECT 'a' AS path, 'b' AS size",
            "returns 2 columns (path, size); it must return one, the path",
        ),
        ("SELECT NULL", "returned a NULL"),
        (
            "SELECT '/etc/passwd'",
            "returned an absolute path \"/etc/passwd\"",
        ),
        ("SELECT 'a/../../b'", "returned a path with \"..\""),
        (
            "SELECT path FROM no_such_table",
            "no such table: no_such_table",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "{sets}[sets.platform]\nsource = \"bundle\"\nmembers = [\"appdb\", \"media\"]\n\
                 references = {{ database = \"appdb\", query = \"{query}\", files = \"media\" }}\n"
            ),
        )
        .unwrap();
        let out = run(&env, &config, None, &["backup", "platform"]);
        assert_eq!(out.status.code(), Some(1), "{query}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains(expected) && message.contains("app.sqlite3"),
            "{query}: {message}"
        );
        let listed = env.run(&["snapshots", "--json"]);
        let snapshots: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
        assert!(
            snapshots.as_array().is_none_or(|s| s.is_empty()),
            "{query}: {snapshots}"
        );
    }
}

#[test]
fn pruning_a_bundle_releases_its_members_to_their_own_policies() {
    let env = Env::new();
    let media = media(&env);
    let config = media_bundle(&env, &media);
    let first = succeeded(&run(&env, &config, None, &["backup", "platform", "--json"]));
    succeeded(&run(&env, &config, None, &["backup", "platform", "--json"]));
    let first_member = first["members"]["media"].clone();
    let kept = |set: &str| -> Vec<Value> {
        let plan = succeeded(&run(
            &env,
            &config,
            None,
            &["prune", set, "--keep-last", "1", "--dry-run", "--json"],
        ));
        plan["keep"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].clone())
            .collect()
    };
    assert!(
        kept("media").contains(&first_member),
        "the first bundle still names it"
    );
    // Restore targets must be members, and so must --only; nothing is written otherwise.
    let dir = env.path("restored");
    let target = format!("media={}", dir.display());
    for (args, expected) in [
        (
            vec!["--target", "nope=/x", "--target", &target],
            "\"nope\" is not a member",
        ),
        (
            vec!["--only", "nope", "--target", &target],
            "--only \"nope\" is not a member",
        ),
    ] {
        let mut all = vec!["restore", "platform:latest"];
        all.extend(args);
        let out = run(&env, &config, None, &all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        assert!(stderr(&out).contains(expected), "{all:?}: {}", stderr(&out));
    }
    assert!(!dir.exists(), "a refused restore writes nothing");
    succeeded(&run(
        &env,
        &config,
        None,
        &["prune", "platform", "--keep-last", "1", "--json"],
    ));
    assert!(
        !kept("media").contains(&first_member),
        "its bundle record is gone"
    );
}

#[test]
fn a_member_with_unreadable_files_makes_the_bundle_incomplete_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let media = media(&env);
    write(&media.join("private/secret.jpg"), b"unreadable");
    std::fs::set_permissions(
        media.join("private/secret.jpg"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let config = media_bundle(&env, &media);
    let out = crate::harness::unprivileged(&env)
        .args([
            "--repo",
            &env.repo,
            "--config",
            config.to_str().unwrap(),
            "backup",
            "platform",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("media:private/secret.jpg"),
        "{}",
        stderr(&out)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        record["errors"][0]["path"], "media:private/secret.jpg",
        "{record:#}"
    );
    let status = succeeded(&run(&env, &config, None, &["status", "--json"]));
    for set in status.as_array().unwrap() {
        assert_eq!(
            set["last_runs"]["backup"]["status"], "incomplete",
            "{set:#}"
        );
    }
}

#[test]
fn the_prefix_is_stripped_once_and_paths_are_normalised() {
    let env = Env::new();
    let media = env.path("media");
    write(&media.join("media/x.jpg"), b"nested");
    write(&media.join("x.jpg"), b"top");
    let db = env.path("app.sqlite3");
    crate::harness::sqlite(&db, "CREATE TABLE uploads (path); INSERT INTO uploads VALUES ('media/media/x.jpg'), ('media/x.jpg'), ('media//x.jpg'), ('./media/./media/x.jpg');");
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            "[sets.appdb]\nsource = \"sqlite\"\npath = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\n\
             [sets.platform]\nsource = \"bundle\"\nmembers = [\"appdb\", \"media\"]\n\
             references = {{ database = \"appdb\", query = \"SELECT path FROM uploads -- every upload\", files = \"media\", prefix = \"media/\" }}\n",
            db.display(),
            media.display()
        ),
    )
    .unwrap();
    let record = succeeded(&run(&env, &config, None, &["backup", "platform", "--json"]));
    let refs = &record["stats"]["references"];
    // Four rows, two files: "media//x.jpg" was refused as the absolute path "/x.jpg", and
    // "./media/./media/x.jpg" was missing.
    assert_eq!(refs["checked"], 2, "{refs}");
    assert_eq!(refs["missing_count"], 0, "{refs}");
    assert_eq!(refs["orphans_count"], 0, "{refs}");
}

#[test]
fn a_bundle_is_refused_while_any_member_is_locked_and_writes_nothing() {
    let env = Env::new();
    let media = media(&env);
    let config = media_bundle(&env, &media);
    let out = run(&env, &config, None, &["backup", "platform"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot_ids();
    // A backup (or prune) of the member running on another host.
    crate::harness::plant_lock(&env, "prune", "db-host-2", 4242, "2026-11-30T02:00:00Z");
    write(&media.join("avatars/3.gif"), b"three");
    let out = run(&env, &config, None, &["backup", "platform"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("locked by prune on host db-host-2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.snapshot_ids(), before, "a snapshot was written");
    let locks = crate::harness::names(&Path::new(&env.repo).join("locks"));
    assert_eq!(locks, ["media.json"], "the bundle left a lock of its own");
}

/// A damaged media archive failed the bundle restore after its database member had been
/// replaced; and a failure after some member was restored did not say so.
#[test]
fn a_bundle_restore_checks_files_before_any_database_and_names_a_partial_restore() {
    let env = Env::new();
    let (media, db) = (media(&env), app_db(&env));
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            "[sets.appdb]\nsource = \"sqlite\"\npath = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\n\
             [sets.platform]\nsource = \"bundle\"\nmembers = [\"appdb\", \"media\"]\n",
            db.display(),
            media.display()
        ),
    )
    .unwrap();
    let bundle = succeeded(&run(&env, &config, None, &["backup", "platform", "--json"]));
    let object = |member: &str, role: &str| {
        let id = bundle["members"][member].as_str().unwrap().to_string();
        let record = succeeded(&run(&env, &config, None, &["show", &id, "--json"]));
        Path::new(&env.repo).join(crate::harness::object_key(&record, role))
    };
    let damage = |path: &Path| {
        let good = std::fs::read(path).unwrap();
        let mut bad = good.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 0xFF;
        std::fs::write(path, bad).unwrap();
        good
    };
    let (db_target, dir_target) = (env.path("restored.sqlite3"), env.path("restored-media"));
    let (db_arg, dir_arg) = (
        format!("appdb={}", db_target.display()),
        format!("media={}", dir_target.display()),
    );
    let restore_with = |extra: &[&str]| {
        let mut args = vec!["restore", "platform:latest", "--target", &db_arg];
        args.extend_from_slice(extra);
        run(&env, &config, None, &args)
    };
    let restore = || restore_with(&["--target", &dir_arg]);

    // A dry run refuses what the restore would, and writes nothing.
    std::fs::create_dir(&dir_target).unwrap();
    std::fs::write(dir_target.join("live.txt"), b"live").unwrap();
    let out = restore_with(&["--target", &dir_arg, "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = restore_with(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("member \"media\" has no target"),
        "{}",
        stderr(&out)
    );
    let same_place = format!("media={}", db_target.display());
    let out = restore_with(&["--target", &same_place, "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would restore into the same place"),
        "{}",
        stderr(&out)
    );
    let out = restore_with(&["--only", "appdb", "--no-keep-previous", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-keep-previous applies to files members"),
        "{}",
        stderr(&out)
    );
    let out = restore_with(&["--target", &dir_arg, "--dry-run", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        plan.contains("would restore media")
            && plan.contains("its current content would be replaced"),
        "{plan}"
    );
    assert_eq!(std::fs::read(dir_target.join("live.txt")).unwrap(), b"live");
    assert!(!db_target.exists());
    std::fs::remove_dir_all(&dir_target).unwrap();

    let archive = object("media", "archive");
    let good = damage(&archive);
    let out = restore();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !db_target.exists(),
        "the database was restored before the damaged media"
    );
    assert!(!dir_target.exists());
    std::fs::write(&archive, good).unwrap();

    damage(&object("appdb", "dump"));
    let out = restore();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("member \"appdb\" failed after media (into ")
            && message.contains("it was empty")
            && message.contains("had been restored; restore the bundle again"),
        "{message}"
    );
    assert_same_tree(&tree(&media), &tree(&dir_target));

    // Regression: forced over a tree, the message showed a pattern (`….pre-restore-<time>`)
    // where the tree it kept is.
    let out = restore_with(&["--target", &dir_arg, "--force"]);
    let message = stderr(&out);
    let kept = names(dir_target.parent().unwrap())
        .into_iter()
        .find(|n| n.starts_with("restored-media.pre-restore-"))
        .unwrap_or_else(|| panic!("no kept tree: {message}"));
    assert!(
        message.contains(&format!(
            "the previous content is kept as {}",
            env.path(&kept).display()
        )),
        "{message}"
    );
}
