//! docs/restore-without-strongbox.md, followed with the system's tar, zstd, gzip and jq:
//! every `sh` block of the page runs, exactly as the page shows it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::harness::{noise, object_key, tree, write, Env, Node};

/// The page's `sh` blocks, each with the heading of the section it stands in.
fn doc_blocks() -> Vec<(String, String)> {
    let doc = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/restore-without-strongbox.md"),
    )
    .unwrap();
    let mut heading = String::new();
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.to_string();
        } else if line == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((heading.clone(), block.join("\n") + "\n"));
        }
    }
    blocks
}

/// The one `sh` block of the section `heading`.
pub fn doc_block(heading: &str) -> String {
    let mut found = doc_blocks().into_iter().filter(|(h, _)| h == heading);
    let (_, block) = found
        .next()
        .unwrap_or_else(|| panic!("no sh block under {heading:?}"));
    assert!(found.next().is_none(), "one sh block under {heading:?}");
    block
}

/// Run the block of section `heading` with `sh -e`, `vars` in its environment; its stdout.
pub fn run_doc_block(heading: &str, vars: &[(&str, &str)]) -> String {
    let out = Command::new("sh")
        .args(["-e", "-c", &doc_block(heading)])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the {heading:?} recipe failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sections whose block a test runs; a new block needs a test (and a line here).
const TESTED: [&str; 4] = [
    "Files snapshots",
    "PostgreSQL snapshots",
    "SQLite snapshots",
    "Encrypted repositories",
];

#[test]
fn every_sh_block_of_the_page_is_run_by_a_test() {
    let headings: Vec<String> = doc_blocks().into_iter().map(|(h, _)| h).collect();
    assert_eq!(headings, TESTED);
}

/// The shell script of the files recipe, exactly as the document shows it.
fn recipe_script() -> String {
    doc_block("Files snapshots")
}

/// Compare what the recipe can restore: kinds, modes of files, content, link targets,
/// file mtimes to the second.
/// Path, kind, content or link target, file mode, file mtime in seconds.
type Comparable = (
    String,
    &'static str,
    Option<String>,
    Option<u32>,
    Option<i64>,
);

fn comparable(t: &std::collections::BTreeMap<String, Node>) -> Vec<Comparable> {
    t.iter()
        .map(|(p, n)| {
            let file = n.kind == "file";
            (
                p.clone(),
                n.kind,
                n.content.clone(),
                file.then_some(n.mode),
                file.then_some(n.mtime_ns / 1_000_000_000),
            )
        })
        .collect()
}

/// Run the files recipe on snapshot `id` of `set` into `target`, `vars` in its environment.
pub fn run_recipe(env: &Env, set: &str, id: &str, target: &Path, vars: &[(&str, &str)]) {
    let script = env.path("restore.sh");
    fs::write(&script, recipe_script()).unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .args([&env.repo, set, id])
        .arg(target)
        .env_remove("KEY")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "recipe failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_documented_recipe_restores_a_full_and_the_end_of_an_incremental_chain() {
    for codec in ["zstd:3", "gzip"] {
        let env = Env::new();
        let src = env.path("src");
        write(&src.join("photos/a.jpg"), &noise(1, 400_000));
        write(&src.join("docs/readme.txt"), b"read me");
        write(&src.join("docs/gone-later.txt"), b"to be deleted");
        write(&src.join("nested/deeper/still/file.bin"), &noise(2, 5000));
        fs::create_dir_all(src.join("empty")).unwrap();
        symlink("../photos/a.jpg", src.join("docs/photo-link")).unwrap();
        let long = format!("{}.txt", "x".repeat(150));
        write(&src.join("docs").join(&long), b"long");
        // Enough unchanged files that the later listings are stored as deltas.
        for i in 0..60 {
            write(&src.join(format!("bulk/{i}.txt")), b"unchanged");
        }
        let full = env.backup(set_name(codec), &src, &["--compression", codec]);
        let full_tree = tree(&src);

        fs::remove_file(src.join("docs/gone-later.txt")).unwrap();
        write(&src.join("docs/readme.txt"), b"read me, version two");
        write(&src.join("photos/b.jpg"), &noise(3, 100_000));
        env.backup(set_name(codec), &src, &["--compression", codec]);
        fs::remove_dir_all(src.join("nested")).unwrap();
        write(&src.join("photos/c.jpg"), &noise(4, 1000));
        let last = env.backup(set_name(codec), &src, &["--compression", codec]);
        let listing = Path::new(&env.repo).join(object_key(&last, "listing"));
        let json = Command::new("zstd")
            .arg("-dc")
            .arg(&listing)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&json.stdout).contains(r#""format":"strongbox-files-delta""#),
            "{codec}: the recipe must resolve a delta chain"
        );

        let t1 = env.path("full");
        run_recipe(
            &env,
            set_name(codec),
            full["id"].as_str().unwrap(),
            &t1,
            &[],
        );
        assert_eq!(
            comparable(&tree(&t1)),
            comparable(&full_tree),
            "{codec}: full"
        );
        let t2 = env.path("last");
        run_recipe(
            &env,
            set_name(codec),
            last["id"].as_str().unwrap(),
            &t2,
            &[],
        );
        assert_eq!(
            comparable(&tree(&t2)),
            comparable(&tree(&src)),
            "{codec}: end of chain"
        );
    }
}

fn set_name(codec: &str) -> &'static str {
    if codec.starts_with("gzip") {
        "media-gz"
    } else {
        "media"
    }
}
