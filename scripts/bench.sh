#!/usr/bin/env bash
# strongbox benchmark: files against tar (gzip, pigz, zstd, --listed-incremental), restic and
# borg; S3 against a plain multipart transfer; databases against pg_dump/pg_restore and sqlite3.
#
# Not part of the test suite. Usage:
#   scripts/bench.sh                       # full size, every section (about 20-30 min on 2 cores)
#   BENCH_SCALE=0.05 scripts/bench.sh      # quick run (sizes and counts x 0.05)
#   BENCH_SECTIONS=s3,db scripts/bench.sh  # only some sections
#
# Sections (BENCH_SECTIONS, comma or space separated, default "files s3 db refs scale chain wal"):
#   files  ~1 GiB media tree + 100,000 small files: strongbox vs tar, restic, borg (below)
#   s3     strongbox full backup of the media tree to s3://… and full restore from it, against
#          a plain boto3 multipart upload/download of a file of the archive's size, on an
#          s3s-fs server on loopback (started and stopped here; data in a temp root)
#   db     PostgreSQL (pgbench -i -s 50 x scale): strongbox backup/restore vs pg_dump -Fc,
#          pg_dump -Fc -Z0 | zstd -T0 -3, pg_restore; SQLite (~300 MB x scale, 3M rows x scale):
#          strongbox vs sqlite3 .backup + zstd -T0 -3, zstd -d (+ cp)
#
# Environment:
#   BENCH_DIR     work dir (default /tmp/strongbox-bench): data/ (cached trees), run/, targets/ (restores),
#                 logs/, results.md
#   BENCH_SCALE   size factor, default 1.0
#   BENCH_SEED    data seed, default 42
#   refs   a bundle's reference cross-check: 1,000,000 x scale references in SQLite against a
#          listing of as many entries (crates/engine/examples/bundle_references.rs; target
#          under 10 s and 200 MB RSS at 1,000,000)
#   scale  costs that grow with the number of files, not their bytes: sparse trees of
#          1,000,000 x scale files and a tenth of that (70 % empty, 30 % of 1-64 bytes, 1,000
#          to a directory; generated once and cached): full, no-change and 1 %-changed backups,
#          ls, verify, restore and prune (wall time, peak RSS, bytes stored by the snapshot),
#          each projected to 10,000,000 files from the slope between the two sizes
#   chain  20 snapshots of the smaller sparse tree, 1 % rewritten before each: restore of the
#          20th against the 1st, 5 alternating pairs, into tmpfs when /dev/shm is writable
#          (target: the 20th within 1.1x); the same chain on s3s-fs on loopback, 3 pairs
#   wal    archive_command throughput: 100 x scale (at least 20) generated 16 MiB WAL segments
#          pushed one process at a time, `strongbox wal push` against `cp` + `sync FILE`,
#          alternating segment by segment
#          (PostgreSQL calls archive_command once per segment; target >= 20 segments/s and
#          within 2x of cp + fsync)
#   BENCH_SECTIONS  sections to run, default "files s3 db refs scale chain wal"
#   BENCH_TREES   files section: trees to run, default "media small"
#   BENCH_TOOLS   files section: tools to run, default "strongbox tar restic borg"
#   BENCH_PAIRS   media tree: pairs of plain and encrypted runs for their ratio, default 8
#   BENCH_DBS     db section: databases to run, default "postgres sqlite"
#   BENCH_PG_SCALE     pgbench scale, default 50 x BENCH_SCALE (at least 1)
#   BENCH_DB_ROUNDS    db section: runs of each tool, in rotating order, the median kept; default 3
#   BENCH_FULL_ROUNDS  files section: the same for the full backups and full restores of
#                      strongbox and tar + zstd
#   BENCH_S3_ROUNDS    s3 section: the same for strongbox and boto3, each direction
#   BENCH_SQLITE_ROWS  SQLite rows, default 3,000,000 x BENCH_SCALE
#   BENCH_BORG_COMPRESSION  borg --compression, default zstd,3 (the level strongbox and tar use)
#   BENCH_SKIP_BUILD=1      use the existing target/release/strongbox
#   BENCH_STRONGBOX=PATH    benchmark this strongbox binary (no build)
#   BENCH_KEEP=1            keep repositories, archives and restores after each tree/section
#
# Files section, for each tree, in this order (every tool sees the same data at each step):
#   1. full backup by every tool            (warm page cache: the tree is read once first;
#                                            strongbox and tar + zstd: medians of 3 rounds)
#   2. no-change backup by every tool
#   3. 2 % of the files are rewritten once (seeded), then every tool's backup after the change
#   4. full restore by every tool (of the latest state; plain tar of its one full archive;
#      strongbox and tar + zstd: medians of 3 rounds)
# Each step runs under GNU `/usr/bin/time -v`: wall time, user+sys CPU of the process and
# the children it waited for, peak RSS (of the largest single process, e.g. tar or zstd).
# Restores write into targets/; where that is ext4 without a journal, a journaled ext4 image
# is mounted there for the run (as root; see journaled_targets).
# Page cache cannot be dropped reliably, so all tools run on a warm cache; `sync` runs
# (untimed) before each step so one tool's write-back does not land in the next one's time.
# Output size: a repository's total after a full backup, its growth for later backups,
# an archive's file size, and a restore's file bytes (checked against the source tree).
#
# PostgreSQL: the system cluster 15/main (started with pg_ctlcluster when down and left
# running), role strongbox / strongbox-test on 127.0.0.1 (created when missing, as in
# scripts/test.sh); the pgbench database is cached (database strongbox_bench, its comment
# records the scale). CPU columns count the client tools only, not the server's backends.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/scripts/bench
W=${BENCH_DIR:-/tmp/strongbox-bench}
SCALE=${BENCH_SCALE:-1.0}
SEED=${BENCH_SEED:-42}
TREES=${BENCH_TREES:-"media small"}
TOOLS=${BENCH_TOOLS:-"strongbox tar restic borg"}
SECTIONS=${BENCH_SECTIONS:-"files s3 db refs scale chain wal"}
SECTIONS=${SECTIONS//,/ }
DBS=${BENCH_DBS:-"postgres sqlite"}
DBS=${DBS//,/ }
PG_SCALE=${BENCH_PG_SCALE:-$(awk -v s="$SCALE" 'BEGIN { n = int(50 * s + 0.5); print (n < 1 ? 1 : n) }')}
SQLITE_ROWS=${BENCH_SQLITE_ROWS:-$(awk -v s="$SCALE" 'BEGIN { n = int(3000000 * s + 0.5); print (n < 1000 ? 1000 : n) }')}
BORG_COMPRESSION=${BENCH_BORG_COMPRESSION:-zstd,3}
FULL_ROUNDS=${BENCH_FULL_ROUNDS:-3}
DB_ROUNDS=${BENCH_DB_ROUNDS:-3}
S3_ROUNDS=${BENCH_S3_ROUNDS:-3}
ZSTD_CMD='zstd -T0 -3'

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " $TOOLS " == *" $1 "* ]]; }
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
want_db() { [[ " $DBS " == *" $1 "* ]]; }

# --------------------------------------------------------------------------- setup

install_missing() {
    local need=()
    command -v python3 >/dev/null || need+=(python3)
    command -v zstd >/dev/null || need+=(zstd)
    /usr/bin/time -v true >/dev/null 2>&1 || need+=(time)
    tar --version 2>/dev/null | grep -q 'GNU tar' || need+=(tar)
    if section files; then
        command -v pigz >/dev/null || need+=(pigz)
        command -v restic >/dev/null || need+=(restic)
        command -v borg >/dev/null || need+=(borgbackup)
        # the media tree's encrypted runs (strongbox-age) make their identity with age-keygen
        command -v age-keygen >/dev/null || need+=(age)
    fi
    if section s3; then
        python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
    fi
    if section db; then
        if want_db postgres; then
            command -v pg_lsclusters >/dev/null || need+=(postgresql)
            command -v pg_dump >/dev/null || need+=(postgresql-client)
            [[ -x /usr/lib/postgresql/15/bin/pgbench ]] || command -v pgbench >/dev/null ||
                need+=(postgresql-15) # Debian ships pgbench in the server package
        fi
        if want_db sqlite; then command -v sqlite3 >/dev/null || need+=(sqlite3); fi
    fi
    if ((${#need[@]})); then
        local sudo=()
        [[ $(id -u) == 0 ]] || sudo=(sudo)
        log "installing: ${need[*]}"
        "${sudo[@]}" apt-get update -q
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need[@]}"
    fi
    python3 -c 'import random; random.Random(1).randbytes' 2>/dev/null ||
        die "python3 >= 3.9 is needed (random.randbytes)"
    if section s3 || section chain; then
        S3S_FS=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
        if [[ ! -x $S3S_FS ]]; then
            # the version scripts/test.sh installs (newer ones need a newer rustc)
            log "installing s3s-fs (cargo install, about 2 minutes)"
            cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
            S3S_FS=$HOME/.cargo/bin/s3s-fs
        fi
    fi
    if section s3; then
        if ! python3 -c 'import boto3' 2>/dev/null; then
            log "installing boto3 (pip)"
            python3 -m pip install -q boto3 ||
                python3 -m pip install -q --break-system-packages boto3
        fi
    fi
    if section db && want_db postgres; then
        PGBENCH=$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)
    fi
}

build_strongbox() {
    if [[ -n ${BENCH_STRONGBOX:-} ]]; then
        SB=$BENCH_STRONGBOX
    else
        local target_dir
        target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
        SB=$target_dir/release/strongbox
        if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
            log "building: cargo build --release -p strongbox"
            (cd "$ROOT" && cargo build --release -p strongbox) ||
                die "the build failed (BENCH_SKIP_BUILD=1 benchmarks the existing $SB)"
        fi
    fi
    [[ -x $SB ]] || die "$SB not found"
    log "strongbox binary: $SB (built $(date -u -r "$SB" +%Y-%m-%dT%H:%M:%SZ))"
}

versions() {
    echo "- strongbox: $("$SB" --version 2>&1 | head -1)"
    echo "- tar: $(tar --version | head -1)"
    echo "- zstd: $(zstd --version | head -1)"
    if section files; then
        echo "- gzip: $(gzip --version | head -1)"
        echo "- pigz: $(pigz --version 2>&1 | head -1)"
        echo "- restic: $(restic version 2>&1 | head -1)"
        echo "- borg: $(borg --version 2>&1 | head -1)"
    fi
    if section s3; then
        echo "- s3s-fs: $("$S3S_FS" --version 2>&1 | head -1)"
        echo "- boto3: $(python3 -c 'import boto3, botocore; print(boto3.__version__, "/ botocore", botocore.__version__)' 2>&1)"
    fi
    if section db; then
        if want_db postgres; then
            echo "- PostgreSQL server: $(/usr/lib/postgresql/15/bin/postgres --version 2>&1 | head -1)"
            echo "- pg_dump: $(pg_dump --version 2>&1 | head -1)"
        fi
        if want_db sqlite; then echo "- sqlite3: $(sqlite3 --version 2>&1 | cut -d' ' -f1-2)"; fi
    fi
    echo "- python3 (data generator): $(python3 --version 2>&1)"
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
}

# Samples the 1-minute load average every 5 s while the benchmark runs.
LOAD_PID=
start_load_sampler() {
    : >"$W/load.samples"
    (while :; do cut -d' ' -f1 /proc/loadavg >>"$W/load.samples"; sleep 5; done) &
    LOAD_PID=$!
}
stop_load_sampler() {
    if [[ -n $LOAD_PID ]]; then
        kill "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
        LOAD_PID=
    fi
}
# Restores write into $TG. On ext4 without a journal (as on this project's VMs) the kernel
# skips an inode freed in the last minutes when it allocates one, so each file created soon
# after a tree was deleted first steps over the deleted inodes: a 100,000-file restore took
# 38 s right after the deletion of two such trees and 8 s before it, and whichever tool
# restored after an `rm -rf` lost. There (as root) $TG is a journaled ext4 image, where ext4
# checks no recent deletions, with freed blocks discarded so the image holds only what is
# live. Only restores go there (and the S3 section's plain download, the S3 restore's
# yardstick): repositories and archives stay on the work dir's own filesystem, so that the
# backup rows stay comparable with earlier runs.
TG=$W/targets
TG_FS=
TG_MOUNTED=
journaled_targets() {
    local src fstype dev
    # an image a killed run left mounted
    if [[ -e $TG.img ]] && mountpoint -q "$TG"; then umount "$TG"; fi
    mkdir -p "$TG"
    read -r src fstype < <(findmnt -n -o SOURCE,FSTYPE -T "$TG")
    dev=${src##*/}
    TG_FS="$fstype ($src)"
    [[ $fstype == ext4 && -d /proc/fs/ext4/$dev ]] || return 0
    compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null && return 0
    if [[ $(id -u) != 0 ]]; then
        log "warning: $TG is on ext4 without a journal: a restore right after a deletion pays for it (run as root for a journaled image)"
        TG_FS="ext4 without a journal ($src): a restore right after the deletion of many files pays seconds for it"
        return 0
    fi
    log "targets/: ext4 without a journal on $src; mounting a journaled ext4 image there"
    rm -rf "$TG" "$TG.img"
    mkdir -p "$TG"
    truncate -s 32G "$TG.img"
    mkfs.ext4 -q -F -N 3000000 "$TG.img"
    # noinit_itable: no inode-table zeroing in the background during the runs
    mount -o loop,discard,noinit_itable "$TG.img" "$TG"
    TG_MOUNTED=1
    TG_FS="journaled ext4 on a loop device (an image in $W on $src, whose ext4 has no journal)"
}
unmount_targets() {
    if [[ -n $TG_MOUNTED && ${BENCH_KEEP:-0} == 1 ]]; then
        log "BENCH_KEEP=1: $TG stays mounted with the kept restores (umount $TG && rm $TG.img)"
    elif [[ -n $TG_MOUNTED ]]; then
        umount "$TG" && rm -f "$TG.img"
        TG_MOUNTED=
    fi
}
cleanup() {
    stop_s3
    stop_load_sampler
    unmount_targets
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Busy CPU seconds of the whole machine since boot (all processes, all cores).
cpu_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

# Pages the kernel reclaimed in allocating processes since boot (direct reclaim): once page
# cache fills memory, whichever tool writes pages frees others first, in system time. The
# results say whether a run had any, as they say what other processes took.
direct_reclaim() { awk '/^pgsteal_direct / { print $2 }' /proc/vmstat 2>/dev/null || echo 0; }

# KiB of free memory the guest has handed back to the host since boot (virtio-balloon free
# page reporting), empty without it. Touching such memory again costs system time (the host
# backs it anew): on this project's VMs it is reported as soon as 1 GiB waits, at any age
# (page_reporting's min_free_ms=0, max_waiting_mib=1024), so the 1 GiB an `rm -rf` of a
# restored tree frees goes back at once, and the next restore's page cache costs 0.45-1.7 s
# of system time by which pages it happens to get.
reported_memory() { cat /sys/module/page_reporting/parameters/reported_kib 2>/dev/null || true; }

# other_cpu BUSY0 WALL: the machine's CPU use since BUSY0 minus this script's own (its
# waited-for children: generator, tools, sync, du), i.e. what other processes took.
other_cpu() {
    local mine
    # `times` (run in this shell, not in a $(...) subshell) line 2: the children's user and
    # system time, e.g. "1m2.500s 0m3.250s"
    times >"$W/times.txt"
    mine=$(awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
        printf "%.2f", s }' "$W/times.txt")
    awk -v b0="$1" -v b1="$(cpu_busy)" -v mine="$mine" -v wall="$2" -v n="$(nproc)" 'BEGIN {
        other = b1 - b0 - mine; if (other < 0) other = 0
        printf "CPU used by other processes during the run: %.0f s of the %.0f core-seconds available (%.0f %%); the benchmark itself used %.0f s", other, wall * n, 100 * other / (wall * n), mine }'
}

# --------------------------------------------------------------------------- measuring

fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
dsize() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

warm() {
    # A cold/warm cache difference would favour whichever tool runs second: read the whole
    # tree once so every tool starts warm (`tar cf /dev/null` would skip the file contents).
    tar -cf - -C "$1" . | cat >/dev/null
}

# prime_memory BYTES: write twice BYTES (what the next step is about to write) into tmpfs
# and delete it, untimed. On this kind of VM the host takes back memory left free for a
# while, and touching it again costs 1-6 s of system time per GiB: the first tool to write a
# restored tree into the page cache paid it (strongbox's media restore ran 8.34 s where it
# runs 1.8 s). Freed again, the primed pages stay cheap for seconds only: writing 761 MB
# into the page cache took 0.16 s of system time at once, 0.32 s 3 s later, 1.81 s 10 s
# later (the guest reports free pages back to the host), so this runs right before a step,
# after a sync of its own: the step's own sync (measure's) then has nothing left to write
# back while the primed memory waits.
prime_memory() {
    local f
    sync
    [[ -w /dev/shm ]] || return 0
    f=$(mktemp /dev/shm/strongbox-prime.XXXX)
    dd if=/dev/zero of="$f" bs=1M count=$((2 * $1 / 1048576)) status=none || true
    rm -f "$f"
}

# rotate N ITEM... -> the items, one per line, starting at the Nth (mod their count)
rotate() {
    local n=$1 j
    shift
    for ((j = 0; j < $#; j++)); do
        local k=$(((j + n) % $# + 1))
        echo "${!k}"
    done
}

# median_rows TSV -> one row per operation and tool (in the order first seen): the run with
# the median wall time among the ok ones (the lower middle one of an even count), its note naming every run's time; a tool with a
# failed run keeps the failure.
median_rows() {
    python3 - "$1" <<'PY'
import sys
groups = {}
for line in open(sys.argv[1]):
    if line.strip():
        row = (line.rstrip("\n").split("\t") + [""] * 9)[:9]
        groups.setdefault((row[0], row[1]), []).append(row)
for runs in groups.values():
    failed = [r for r in runs if r[6] not in ("ok", "mismatch")]
    if failed:
        row = failed[0]
    else:
        ordered = sorted(runs, key=lambda r: float(r[2]))
        row = list(ordered[(len(ordered) - 1) // 2])
        walls = " / ".join(r[2] for r in runs)
        row[7] = f"{row[7]}; median of {len(runs)} runs ({walls} s)".lstrip("; ")
    print("\t".join(row).rstrip("\t"))
PY
}

# in_rounds ROUNDS STEP ITEM...: `STEP ITEM` for each item, ROUNDS times, the order rotating
# between rounds: whichever runs first after the previous section pays for
# caches the others find warm (a single run, strongbox first, measured the PostgreSQL backup
# at 1.13-1.72x; alternated, 0.94x). RESULTS then gets each operation and tool's median run.
in_rounds() {
    local rounds=$1 step=$2 main=$RESULTS all i item
    shift 2
    all=$(mktemp "$W/rounds.XXXXXX")
    RESULTS=$all
    for ((i = 0; i < rounds; i++)); do
        for item in $(rotate "$i" "$@"); do
            "$step" "$item"
        done
    done
    RESULTS=$main
    median_rows "$all" >>"$RESULTS"
    rm -f "$all"
}

# fingerprint DIR -> "<regular files> <bytes>"
fingerprint() { python3 "$BENCH/gen.py" fingerprint --dir "$1"; }

# An awk function for the programs below: the median of a space-separated list of numbers
# (0 for an empty one).
AWK_MEDIAN='function median(list,   v, k, i, j, x) {
    k = split(list, v, " ")
    for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return k == 0 ? 0 : k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
}
'

declare -A BROKEN=()
STEP=0

# measure OP TOOL NOTE SIZE_KIND SIZE_ARG -- CMD...
#   SIZE_KIND: total PATH (du -sb after) | delta PATH (du -sb growth) | file PATH |
#              restore "DIR|EXPECTED_FINGERPRINT" | same "FILE|REFERENCE_FILE" (cmp) |
#              pgdb "DATABASE|EXPECTED_ROW_COUNTS" | sqlite "FILE|EXPECTED_ROW_COUNTS"
# Appends one TSV row to $RESULTS; a failing command becomes a "failed" row, never an abort.
# XFER=MB (or XFER=out: the output size) fills the row's "moved MB" column, the base of the
# MiB/s column of the S3 table; LAST_LOG is the command's output.
LAST_LOG=
measure() {
    local op=$1 tool=$2 note=$3 kind=$4 arg=$5
    shift 6
    STEP=$((STEP + 1))
    local id
    id=$(printf '%s-%02d' "$TREE" "$STEP")
    local tlog=$LOGS/$id.time out=$LOGS/$id.log
    LAST_LOG=$out
    local key=${tool%% *}
    if [[ -n ${BROKEN[$key]:-} ]]; then
        log "$op / $tool: skipped (${BROKEN[$key]})"
        printf '%s\t%s\t\t\t\t\tfailed (%s)\t%s\n' "$op" "$tool" "${BROKEN[$key]}" "$note" >>"$RESULTS"
        return 0
    fi
    local before=0
    [[ $kind == delta ]] && before=$(dsize "$arg")
    # A tool writing one file writes a new one, as strongbox writes into a new repository:
    # replacing the last round's 761 MB tar.zst in place cost tar 0.6 s (1.33-1.40 s in round 1,
    # 2.0 s in rounds 2 and 3), and the last upload's object cost boto3 0.5 s (4.12 s against
    # 4.68 s), which flattered strongbox's ratios.
    [[ $kind == file ]] && rm -f "$arg"
    sync
    printf '%s / %s\n$ %s\n\n' "$op" "$tool" "${*@Q}" >"$out"
    local t0=$EPOCHREALTIME rc=0
    /usr/bin/time -v -o "$tlog" "$@" >>"$out" 2>&1 || rc=$?
    local t1=$EPOCHREALTIME
    local wall cpu rss
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    cpu=$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$tlog")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$tlog")
    # borg: exit 1 is "warning" (e.g. a file changed while read); the data is stored
    if ((rc != 0)) && ! [[ $key == borg && $rc == 1 ]]; then
        log "$op / $tool: FAILED (exit $rc after ${wall}s), log $out:"
        tail -n 5 "$out" | sed 's/^/    /' >&2
        printf '%s\t%s\t\t\t\t\tfailed (exit %s)\t%s\n' "$op" "$tool" "$rc" "$note" >>"$RESULTS"
        return 0
    fi
    local bytes status=ok
    case $kind in
        total) bytes=$(dsize "$arg") ;;
        delta) bytes=$(($(dsize "$arg") - before)) ;;
        file) bytes=$(fsize "$arg") ;;
        restore)
            local dir=${arg%%|*} expect=${arg#*|} got
            got=$(fingerprint "$dir")
            bytes=${got#* }
            if [[ $got != "$expect" ]]; then
                status=mismatch
                log "$op / $tool: restored $got (files bytes), source has $expect"
            fi
            ;;
        same)
            local file=${arg%%|*} ref=${arg#*|}
            bytes=$(fsize "$file")
            if ! cmp -s "$file" "$ref"; then
                status=mismatch
                log "$op / $tool: $file differs from $ref"
            fi
            ;;
        pgdb | sqlite)
            local target=${arg%%|*} expect=${arg#*|} got
            if [[ $kind == pgdb ]]; then
                bytes=$(pg_q postgres "SELECT pg_database_size('$target')" 2>/dev/null) || bytes=0
                got=$(pg_counts "$target") || true
            else
                bytes=$(fsize "$target")
                got=$(python3 "$BENCH/dbgen.py" count --db "$target" 2>&1) || true
            fi
            if [[ $got != "$expect" ]]; then
                status=mismatch
                log "$op / $tool: restored rows '$got', source has '$expect'"
            fi
            ;;
        *) bytes=0 ;;
    esac
    local xfer=${XFER:-}
    [[ $xfer == out ]] && xfer=$(mb "$bytes")
    log "$op / $tool: ${wall}s wall, ${cpu}s CPU, ${rss} MB RSS, $(mb "$bytes") MB"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$tool" "$wall" "$cpu" "$rss" "$(mb "$bytes")" \
        "$status" "$note" "$xfer" >>"$RESULTS"
}

# results_for NAME: measure's rows from here on go to a new results-NAME.tsv, steps counted
# from 1, no tool broken yet.
results_for() {
    TREE=$1
    RESULTS=$W/results-$1.tsv
    STEP=0
    BROKEN=()
    : >"$RESULTS"
}

# setup TOOL CMD... : an untimed preparation step; if it fails, the tool's rows say so.
setup() {
    local key=$1
    shift
    if ! "$@" >>"$LOGS/$TREE-setup.log" 2>&1; then
        BROKEN[$key]="setup failed: $*"
        log "$key: setup failed ($*), see $LOGS/$TREE-setup.log"
    fi
}

# --------------------------------------------------------------------------- one tree

# One full restore in bench_tree, named by in_rounds (sb: strongbox's latest snapshot, zst:
# tar + zstd's full archive); uses bench_tree's locals. Single runs put strongbox's media
# restore at 2.31 s while the encryption pairs, minutes later, restored it in 1.25 s.
full_restore_run() {
    prime_memory "${fp0#* }"
    local t
    case $1 in
    sb)
        t=$TG/$TREE-restore-sb
        rm -rf "$t"
        measure "$op" strongbox "bench:latest" restore "$t|$fp1" -- \
            "$SB" -q --repo "$R/sb-repo" restore bench:latest --target "$t"
        ;;
    zst)
        t=$TG/$TREE-restore-tar
        rm -rf "$t" && mkdir -p "$t"
        measure "$op" "tar + zstd" "full archive = pre-change state" restore "$t|$fp0" -- \
            tar -I 'zstd -T0' -xf "$R/full.tar.zst" -C "$t"
        ;;
    esac
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
}

# One full backup in bench_tree, named by in_rounds (sb: strongbox into a new repository,
# zst: tar + zstd); uses bench_tree's locals. Their ratio, from single runs, swung from
# 1.01x to 1.49x between bench runs with no change to either, so the pair runs in rotating
# rounds, each after priming memory and warming the tree.
full_backup_run() {
    prime_memory "${fp0#* }"
    warm "$src"
    case $1 in
    sb)
        rm -rf "$R/sb-repo"
        measure "$op" strongbox "$sbnote" total "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup files bench "$src" --full
        ;;
    zst)
        measure "$op" "tar + zstd" "-T0 -3" file "$R/full.tar.zst" -- \
            tar -I "$ZSTD_CMD" -cf "$R/full.tar.zst" -C "$src" .
        ;;
    esac
}

# One incremental backup of every tool, named OP; tar's level and archive name, borg's
# archive name; uses bench_tree's locals.
incremental_round() {
    local op=$1 level=$2 tar_archive=$R/$3.tar.zst borg_archive=$4
    if want strongbox; then
        warm "$src"
        measure "$op" strongbox incremental delta "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup files bench "$src" --incremental
        # untimed: the encrypted repository follows the same chain, so its restore is comparable
        if [[ $TREE == media ]]; then
            setup strongbox-age "$SB" -q --repo "$R/sb-age" --identity "$R/age-identity.txt" \
                backup files bench "$src" --incremental
        fi
    fi
    if want tar; then
        warm "$src"
        measure "$op" "tar incremental" "$level" file "$tar_archive" -- \
            tar --listed-incremental="$R/tar.snar" -I "$ZSTD_CMD" -cf "$tar_archive" -C "$src" .
    fi
    if want restic; then
        warm "$src"
        measure "$op" restic "" delta "$R/restic" -- env -C "$src" "${RV[@]}" restic -r "$R/restic" backup .
    fi
    if want borg; then
        warm "$src"
        measure "$op" borg "" delta "$R/borg" -- \
            env -C "$src" "${BV[@]}" borg create "$bc" "$R/borg::$borg_archive" .
    fi
}

# environment of restic and borg (`env -C DIR VARS... CMD` runs them in DIR)
RV=()
BV=()

bench_tree() {
    TREE=$1
    local src=$W/data/$TREE
    R=$W/run/$TREE
    results_for "$TREE"
    [[ $TREE == media ]] && rm -f "$W/encryption-pairs.tsv" "$W/partial-media.txt"
    log "== tree $TREE (scale $SCALE, seed $SEED)"
    python3 "$BENCH/gen.py" ensure --tree "$TREE" --dir "$src" --seed "$SEED" --scale "$SCALE" >&2
    rm -rf "$R"
    mkdir -p "$R"
    local fp0 fp1
    fp0=$(fingerprint "$src")
    log "$TREE: ${fp0% *} files, $(mb "${fp0#* }") MB"
    RV=(RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$R/restic-cache")
    BV=(BORG_PASSPHRASE=bench BORG_BASE_DIR="$R/borg-base"
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes)
    if want restic; then setup restic env "${RV[@]}" restic -r "$R/restic" init; fi
    if want borg; then setup borg env "${BV[@]}" borg init -e none "$R/borg"; fi
    local bc="--compression=$BORG_COMPRESSION"
    local sbnote="zstd:3"

    # 1. full backups; strongbox and tar + zstd, whose ratio is the row's goal, in rounds
    local op="full backup" pair=()
    if want strongbox; then pair+=(sb); fi
    if want tar; then pair+=(zst); fi
    if ((${#pair[@]})); then in_rounds "$FULL_ROUNDS" full_backup_run "${pair[@]}"; fi
    if want strongbox; then
        # the S3 section compares its S3 backup with this local one
        if [[ $TREE == media ]]; then
            MEDIA_LOCAL_ROW=$(awk -F '\t' '$1 == "full backup" && $2 == "strongbox"' "$RESULTS")
        fi
        # the same backup into an age-encrypted repository (target: within 1.10×)
        if [[ $TREE == media ]]; then
            setup strongbox-age age-keygen -o "$R/age-identity.txt"
            setup strongbox-age sh -c '"$1" -q --repo "$2" init --encrypt --recipient "$(age-keygen -y "$3")"' \
                sh "$SB" "$R/sb-age" "$R/age-identity.txt"
            warm "$src"
            measure "$op" "strongbox-age" "$sbnote, age" total "$R/sb-age" -- \
                "$SB" -q --repo "$R/sb-age" --identity "$R/age-identity.txt" backup files bench "$src" --full
        fi
    fi
    if want tar; then
        warm "$src"
        measure "$op" "tar + gzip" "tar czf" file "$R/full.tar.gz" -- tar -czf "$R/full.tar.gz" -C "$src" .
        warm "$src"
        measure "$op" "tar + pigz" "" file "$R/full.tar.pigz.gz" -- tar -I pigz -cf "$R/full.tar.pigz.gz" -C "$src" .
        warm "$src"
        measure "$op" "tar incremental" "level 0, zstd -T0 -3" file "$R/incr0.tar.zst" -- \
            tar --listed-incremental="$R/tar.snar" -I "$ZSTD_CMD" -cf "$R/incr0.tar.zst" -C "$src" .
    fi
    if want restic; then
        warm "$src"
        measure "$op" restic "compression auto" total "$R/restic" -- env -C "$src" "${RV[@]}" restic -r "$R/restic" backup .
    fi
    if want borg; then
        warm "$src"
        measure "$op" borg "$BORG_COMPRESSION" total "$R/borg" -- \
            env -C "$src" "${BV[@]}" borg create "$bc" "$R/borg::b1-full" .
    fi

    # 2. no-change backups
    incremental_round "no-change backup" "level 1" incr1 b2-nochange

    # 3. the 2 % change, applied once, then every tool's backup
    python3 "$BENCH/gen.py" mutate --tree "$TREE" --dir "$src" --seed "$SEED" --scale "$SCALE" |
        tee "$W/mutate-$TREE.txt" >&2
    fp1=$(fingerprint "$src")
    incremental_round "backup after 2 % change" "level 2" incr2 b3-changed

    # 4. restores (of the latest snapshot, i.e. the changed tree); each round primes memory
    # itself, so only a run without them primes it here for the first restore after
    op="full restore"
    local t
    if ((${#pair[@]})); then
        in_rounds "$FULL_ROUNDS" full_restore_run "${pair[@]}"
    else
        prime_memory "${fp0#* }"
    fi
    if want strongbox; then
        if [[ $TREE == media ]]; then
            partial_restore strongbox "$src" "$R/sb-repo"
            t=$TG/$TREE-restore-sb-age
            rm -rf "$t"
            measure "$op" "strongbox-age" "bench:latest, age" restore "$t|$fp1" -- \
                "$SB" -q --repo "$R/sb-age" --identity "$R/age-identity.txt" restore bench:latest --target "$t"
            rm -rf "$t"
            partial_restore strongbox-age "$src" "$R/sb-age" --identity "$R/age-identity.txt"
        fi
    fi
    if want tar; then
        t=$TG/$TREE-restore-tar-chain
        rm -rf "$t" && mkdir -p "$t"
        # shellcheck disable=SC2016 # expanded by the inner bash
        measure "$op" "tar incremental" "levels 0+1+2" restore "$t|$fp1" -- \
            bash -c 'set -e; for a in "$@"; do tar --listed-incremental=/dev/null -I "zstd -T0" -xf "$a" -C "$0"; done' \
            "$t" "$R/incr0.tar.zst" "$R/incr1.tar.zst" "$R/incr2.tar.zst"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi
    if want restic; then
        t=$TG/$TREE-restore-restic
        rm -rf "$t"
        measure "$op" restic "latest" restore "$t|$fp1" -- env "${RV[@]}" restic -r "$R/restic" restore latest --target "$t"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi
    if want borg; then
        t=$TG/$TREE-restore-borg
        rm -rf "$t" && mkdir -p "$t"
        measure "$op" borg "extract" restore "$t|$fp1" -- \
            env -C "$t" "${BV[@]}" borg extract "$R/borg::b3-changed"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi

    # undo the change so the cached tree stays pristine for the next run
    python3 "$BENCH/gen.py" ensure --tree "$TREE" --dir "$src" --seed "$SEED" --scale "$SCALE" >&2
    if [[ $TREE == media ]] && want strongbox && [[ -z ${BROKEN[strongbox-age]:-} ]]; then
        encryption_pairs "$src" "$R/age-identity.txt"
    fi
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# partial_restore TOOL SRC REPO [ARG...]: 1 % of the files of the tree SRC by --include, from
# the repository REPO (ARGs: its key); only the frames that hold them are fetched, in an
# encrypted repository the age chunks around them. The engine's debug events say what it
# fetched of each archive (all of it when it streams one whole), in bytes of the compressed
# stream.
partial_restore() {
    local tool=$1 src=$2 repo=$3 t=$TG/$TREE-restore-$1-partial picks=() inc=() p
    shift 3
    rm -rf "$t"
    mapfile -t picks < <(cd "$src" && find . -type f | LC_ALL=C sort |
        awk 'NR % 100 == 1 { sub("^[.]/", ""); print }')
    for p in "${picks[@]}"; do inc+=(--include "$p"); done
    measure "partial restore, 1 % of files" "$tool" "${#picks[@]} --include" total "$t" -- \
        "$SB" -vv --repo "$repo" "$@" restore bench:latest --target "$t" "${inc[@]}"
    awk -v n="${#picks[@]}" -v tool="$tool" '/frames to fetch/ {
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            s += v["size"]; f += (v["by_frames"] == "true" ? v["fetched"] : v["size"])
        }
        END { if (s > 0) printf "Partial restore of 1 %% of the files (%d, --include), %s: fetched %.1f MB of %.1f MB of archives (%.1f %%; target ≤ 5 %%)\n", n, tool, f / 1e6, s / 1e6, 100 * f / s }' \
        "$LAST_LOG" >>"$W/partial-media.txt"
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
}

# encryption_pairs SRC IDENTITY: the encrypted ÷ plain comparison, fairly. On this kind of VM
# the second of two runs writing 1 GiB pays more for its fresh page-cache pages than the first
# (0.4-1.5 s of system time), so one plain run followed by one encrypted run measures the
# order. Here each pair runs in the order opposite to the last, each run after memory was
# primed (prime_memory), a backup into a repository just emptied, a restore with both
# restores' targets deleted (with the other's 1 GiB target left in place, the encrypted
# restore ran 4.25-4.38 s when second in its pair and 1.62 s when first). The medians of
# BENCH_PAIRS pairs (default 8), of wall time and of CPU time (user + system, steadier than
# wall here), go to the summary. An even count: with 3, one kind ran second twice, and one
# run took the second slot's toll each time (restores of 0.92-0.97 s first, 2.84-2.99 s
# second, either kind: the encrypted ÷ plain restore read 2.99×). Eight, not four: a run
# of either kind, first or second, now and then takes 1-1.5 s more system time (restores
# of 2.5-2.8 s among ones of 1.25-1.8 s), and with 4 pairs two such runs of one kind set
# its median (two of four encrypted restores ran 2.63 and 2.82 s, the other two 1.25 and
# 1.28 s; the medians read 1.12×).
encryption_pairs() {
    local src=$1 identity=$2 pairs=${BENCH_PAIRS:-8} P=$R/pairs i kind t0 t1
    local recipient bytes
    recipient=$(age-keygen -y "$identity")
    bytes=$(dsize "$src")
    log "== encrypted ÷ plain: $pairs pairs of full backups and restores, order alternating"
    mkdir -p "$P"
    : >"$W/encryption-pairs.tsv"
    pair_run() { # OP KIND CMD... -> one TSV row "op kind seconds"
        local op=$1 kind=$2
        shift 2
        sync
        t0=$EPOCHREALTIME
        /usr/bin/time -f "%U %S" -o "$P/cpu" "$@" >/dev/null 2>>"$LOGS/media-pairs.log" ||
            { log "encryption pairs: $op $kind failed"; return 1; }
        t1=$EPOCHREALTIME
        awk -v o="$op" -v k="$kind" -v a="$t0" -v b="$t1" '{ printf "%s\t%s\t%.3f\t%.2f\t%.2f\n", o, k, b - a, $1 + $2, $1 }' \
            "$P/cpu" >>"$W/encryption-pairs.tsv"
    }
    backup() {
        rm -rf "$P/$1"
        prime_memory "$bytes"
        if [[ $1 == age ]]; then
            "$SB" -q --repo "$P/age" init --encrypt --recipient "$recipient" >/dev/null
            pair_run "full backup" age "$SB" -q --repo "$P/age" --identity "$identity" backup files bench "$src"
        else
            "$SB" -q --repo "$P/plain" init >/dev/null
            pair_run "full backup" plain "$SB" -q --repo "$P/plain" backup files bench "$src"
        fi
    }
    restore() {
        rm -rf "$TG/pairs-plain" "$TG/pairs-age"
        prime_memory "$bytes"
        if [[ $1 == age ]]; then
            pair_run "full restore" age "$SB" -q --repo "$P/age" --identity "$identity" restore bench:latest --target "$TG/pairs-age"
        else
            pair_run "full restore" plain "$SB" -q --repo "$P/plain" restore bench:latest --target "$TG/pairs-plain"
        fi
    }
    warm "$src"
    for ((i = 0; i < pairs; i++)); do
        for kind in $( ((i % 2)) && echo "age plain" || echo "plain age"); do backup "$kind" || return 0; done
    done
    for ((i = 0; i < pairs; i++)); do
        for kind in $( ((i % 2)) && echo "age plain" || echo "plain age"); do restore "$kind" || return 0; done
    done
    rm -rf "$P" "$TG"/pairs-*
}

# --------------------------------------------------------------------------- S3 section

S3S_FS=s3s-fs
S3_PID=
S3_BUCKET=strongbox-bench
MEDIA_LOCAL_ROW=

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # HOST PORT
    local _
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# start_s3 ROOT: s3s-fs on a free loopback port serving ROOT (bucket $S3_BUCKET), AWS_* exported
start_s3() {
    local root=$1 port
    mkdir -p "$root/$S3_BUCKET"
    port=$(free_port)
    "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key strongbox-bench \
        --secret-key strongbox-bench-secret "$root" >"$LOGS/s3s-fs.log" 2>&1 &
    S3_PID=$!
    if ! wait_for_port 127.0.0.1 "$port"; then
        log "s3s-fs did not start:"
        tail -n 5 "$LOGS/s3s-fs.log" | sed 's/^/    /' >&2
        stop_s3
        return 1
    fi
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=strongbox-bench \
        AWS_SECRET_ACCESS_KEY=strongbox-bench-secret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
    log "s3s-fs (pid $S3_PID) on $AWS_ENDPOINT_URL, root $root"
}

stop_s3() {
    if [[ -n $S3_PID ]]; then
        kill "$S3_PID" 2>/dev/null || true
        wait "$S3_PID" 2>/dev/null || true
        S3_PID=
        unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ALLOW_HTTP
    fi
}

# boto3's own transfer time from an s3plain.py log ("... in 5.12 s ..."); nothing when the run
# was skipped and left no log
plain_seconds() {
    [[ -f $1 ]] || return 0
    sed -n 's/^s3plain [a-z]*: [0-9]* bytes in \([0-9.]*\) s .*/\1/p' "$1" | tail -n 1
}

# s3_run ITEM: one timed transfer of the S3 section, after priming memory: sb-up (a full backup
# into a repository emptied of the last round's snapshot), plain-up, sb-down, plain-down.
# boto3's own transfer times go to $R/up.secs and $R/down.secs.
s3_run() {
    prime_memory "${fp0#* }"
    case $1 in
    sb-up)
        rm -rf "$s3root/$S3_BUCKET/sb/sets"
        warm "$src"
        XFER=out measure "$op" strongbox "backup files --full to $url" total "$s3root/$S3_BUCKET/sb" -- \
            "$SB" -q --repo "$url" backup files bench "$src" --full
        [[ -f $R/plain.bin ]] || s3_plain_bytes
        ;;
    plain-up)
        [[ -f $R/plain.bin ]] && cat "$R/plain.bin" >/dev/null
        XFER=out measure "$op" "plain upload" "$plain_note, the archive's $(mb "$archive_bytes") MiB" \
            file "$s3root/$S3_BUCKET/plain/archive.bin" -- \
            python3 "$BENCH/s3plain.py" upload "$R/plain.bin" "$S3_BUCKET" plain/archive.bin
        plain_seconds "$LAST_LOG" >>"$R/up.secs"
        ;;
    sb-down)
        rm -rf "$t"
        XFER=$(mb "$archive_bytes") measure "$op" strongbox "restore bench:latest from $url" restore "$t|$fp0" -- \
            "$SB" -q --repo "$url" restore bench:latest --target "$t"
        rm -rf "$t"
        ;;
    plain-down)
        # into $TG, where strongbox restores: a download into the work dir's filesystem ran
        # 2.47 s where one into $TG ran 2.64 s (medians of 6 alternating), flattering boto3
        rm -f "$TG/s3-plain.dl"
        XFER=out measure "$op" "plain download" "boto3 download_file, 8 MiB parts × 8 threads" \
            same "$TG/s3-plain.dl|$R/plain.bin" -- \
            python3 "$BENCH/s3plain.py" download "$S3_BUCKET" plain/archive.bin "$TG/s3-plain.dl"
        plain_seconds "$LAST_LOG" >>"$R/down.secs"
        rm -f "$TG/s3-plain.dl"
        ;;
    esac
}

# $R/plain.bin: the bytes of strongbox's archive object as s3s-fs stored them (random bytes of
# its size when they cannot be copied), for boto3 to move the same bytes; sets archive_bytes.
s3_plain_bytes() {
    local found
    found=$("$SB" --json --repo "$url" show bench:latest 2>/dev/null | python3 -c '
import json, sys
for o in json.load(sys.stdin)["objects"]:
    if o["key"].endswith((".tar.zst", ".tar.gz", ".tar")):
        print(o["key"], o["size"])' 2>/dev/null) || found=
    if [[ -z $found ]]; then
        BROKEN[plain]="no strongbox archive to size the transfer"
        return 0
    fi
    archive_bytes=${found##* }
    cp "$s3root/$S3_BUCKET/sb/${found% *}" "$R/plain.bin" 2>/dev/null ||
        head -c "$archive_bytes" /dev/urandom >"$R/plain.bin"
    log "archive object ${found% *}: $(mb "$archive_bytes") MiB"
}

bench_s3() {
    results_for s3
    : >"$W/summary-s3.txt"
    local src=$W/data/media
    R=$W/run/s3
    log "== S3: media tree (scale $SCALE) to s3s-fs on loopback, $S3_ROUNDS rounds"
    python3 "$BENCH/gen.py" ensure --tree media --dir "$src" --seed "$SEED" --scale "$SCALE" >&2
    rm -rf "$R"
    mkdir -p "$R"
    local fp0 s3root=$R/s3root url=s3://$S3_BUCKET/sb archive_bytes=0 t=$TG/s3-restore-sb
    fp0=$(fingerprint "$src")
    if ! start_s3 "$s3root"; then
        printf '%s\t%s\t\t\t\t\tfailed (s3s-fs did not start)\t\n' "full backup → S3" strongbox >>"$RESULTS"
        return 0
    fi
    local plain_note="boto3 upload_file, 8 MiB parts × 4 threads"
    setup strongbox "$SB" -q --repo "$url" init

    # 1. uploads: strongbox's full backup, and a plain upload of its archive's bytes (the first
    # round runs strongbox first, to have them)
    local op="full backup → S3"
    in_rounds "$S3_ROUNDS" s3_run sb-up plain-up

    # the same backup into a local repository
    if [[ -n $MEDIA_LOCAL_ROW ]]; then
        local wall cpu rss size status
        IFS=$'\t' read -r _ _ wall cpu rss size status _ _ <<<"$MEDIA_LOCAL_ROW"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "strongbox, local repo" "$wall" "$cpu" "$rss" \
            "$size" "$status" "the same backup to a local directory: the files section's run" "$size" >>"$RESULTS"
    else
        warm "$src"
        XFER=out measure "$op" "strongbox, local repo" "the same backup to a local directory" \
            total "$R/sb-local" -- "$SB" -q --repo "$R/sb-local" backup files bench "$src" --full
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R/sb-local"
    fi

    # 2. downloads: strongbox's full restore, and a plain download of the same object
    op="full restore ← S3"
    in_rounds "$S3_ROUNDS" s3_run sb-down plain-down
    stop_s3

    # strongbox ÷ plain against boto3's transfer time alone (no Python start-up, no import)
    python3 - "$RESULTS" "$R/up.secs" "$R/down.secs" >"$W/summary-s3.txt" <<'PY'
import statistics, sys
rows = [(l.rstrip("\n").split("\t") + [""] * 9)[:9] for l in open(sys.argv[1]) if l.strip()]
wall = {(r[0], r[1]): float(r[2]) for r in rows if r[6] in ("ok", "mismatch")}

def median_secs(path):
    try:
        secs = [float(l) for l in open(path) if l.strip()]
    except OSError:
        return None
    return statistics.median_low(secs) if secs else None

out = []
for op, plain, path in (("full backup → S3", "plain upload", sys.argv[2]),
                        ("full restore ← S3", "plain download", sys.argv[3])):
    sb, pw, secs = wall.get((op, "strongbox")), wall.get((op, plain)), median_secs(path)
    if sb and pw:
        cell = f"{sb / pw:.2f}× of the whole boto3 command"
        if secs:
            cell += f", {sb / secs:.2f}× of its transfer alone ({secs:.2f} s without Python start-up)"
        out.append(f"- {op}: strongbox {sb:.2f} s ÷ {plain} {pw:.2f} s = {cell} (medians)")
print("\n".join(out))
PY
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# --------------------------------------------------------------------------- database section

PG_PORT=
PG_DB=strongbox_bench
PGBENCH=pgbench

# pg_q DB SQL: one value, as the strongbox role over TCP (PGHOST/PGUSER/PGPASSWORD exported)
pg_q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# pg_counts DB: "table=rows ..." of every user table, exact counts, sorted by name
pg_counts() {
    pg_q "$1" "SELECT string_agg(format('%s=%s', t, (xpath('/row/c/text()',
        query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n, t), false, true, '')))[1]::text), ' '
        ORDER BY t) FROM (SELECT schemaname AS n, tablename AS t FROM pg_tables
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) s" 2>&1
}

pg_checkpoint() { pg_q postgres CHECKPOINT >/dev/null 2>&1 || true; }
pg_drop() { dropdb --if-exists "$1" >/dev/null 2>&1 || log "could not drop database $1"; }

# the system cluster 15/main up, the strongbox role present, PG* exported for the tools
pg_ready() {
    command -v pg_lsclusters >/dev/null || { log "PostgreSQL is not installed"; return 1; }
    if ! pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online'; then
        # left running afterwards: other users of the cluster may need it by then
        log "starting PostgreSQL: pg_ctlcluster 15 main start"
        pg_ctlcluster 15 main start || return 1
    fi
    PG_PORT=$(pg_lsclusters -h 2>/dev/null | awk '$1 == 15 && $2 == "main" { print $3 }')
    [[ -n $PG_PORT ]] || return 1
    local as_postgres=(runuser -u postgres --)
    [[ $(id -u) == 0 ]] || as_postgres=(sudo -u postgres)
    "${as_postgres[@]}" psql -X -p "$PG_PORT" -qc "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'strongbox') THEN
            CREATE ROLE strongbox LOGIN SUPERUSER PASSWORD 'strongbox-test';
        END IF; END \$\$;" >/dev/null || return 1
    export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=strongbox PGPASSWORD=strongbox-test
    pg_q postgres "SELECT 1" >/dev/null
}

# the pgbench database at $PG_SCALE, cached: its comment records how it was made
pg_ensure_db() {
    local want="bench.sh: pgbench -i -s $PG_SCALE" have
    have=$(pg_q postgres "SELECT shobj_description(oid, 'pg_database') FROM pg_database
        WHERE datname = '$PG_DB'")
    if [[ $have == "$want" ]]; then
        log "postgres: cached database $PG_DB reused ($want)"
        return 0
    fi
    log "postgres: creating $PG_DB with pgbench -i -s $PG_SCALE"
    local t0=$EPOCHREALTIME
    if ! { dropdb --if-exists "$PG_DB" && createdb -T template0 "$PG_DB" &&
        "$PGBENCH" -i -q -s "$PG_SCALE" "$PG_DB" && pg_q postgres "COMMENT ON DATABASE $PG_DB IS '$want'"; } \
        >"$LOGS/pgbench-init.log" 2>&1; then
        log "making $PG_DB failed, see $LOGS/pgbench-init.log"
        tail -n 5 "$LOGS/pgbench-init.log" | sed 's/^/    /' >&2
        return 1
    fi
    log "postgres: $PG_DB made in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
}

bench_postgres() {
    results_for postgres
    R=$W/run/postgres
    rm -rf "$R"
    mkdir -p "$R"
    rm -f "$W/postgres.data"
    log "== PostgreSQL: pgbench scale $PG_SCALE"
    if ! pg_ready || ! pg_ensure_db; then
        printf '%s\t%s\t\t\t\t\tfailed (PostgreSQL not available, see the log)\t\n' backup strongbox >>"$RESULTS"
        return 0
    fi
    local fp size0 url=postgresql://strongbox@127.0.0.1:$PG_PORT
    fp=$(pg_counts "$PG_DB") # exact counts: also reads every table once (warm cache)
    size0=$(pg_q postgres "SELECT pg_database_size('$PG_DB')")
    echo "pgbench -i -s $PG_SCALE: database $PG_DB of $(mb "$size0") MiB; rows: $fp" >"$W/postgres.data"
    log "postgres: $(cat "$W/postgres.data")"
    local r_sb=${PG_DB}_r_sb r_fc=${PG_DB}_r_fc r_zst=${PG_DB}_r_zst d
    for d in "$r_sb" "$r_fc" "$r_zst"; do pg_drop "$d"; done

    # 1. backups (the password travels in PGPASSWORD, never in the URL), 2. restores, each
    # into a new database (dropped after its check); medians of rotating rounds (in_rounds).
    local op=backup
    in_rounds "$DB_ROUNDS" pg_backup_run sb fc zst
    op=restore
    in_rounds "$DB_ROUNDS" pg_restore_run sb fc zst
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# One run of a tool in bench_postgres, named by in_rounds; uses bench_postgres's locals.
pg_backup_run() {
    pg_checkpoint
    case $1 in
    sb)
        rm -rf "$R/sb-repo"
        measure "$op" strongbox "backup postgres: pg_dump -Fc -Z0, zstd:3 in-process" \
            total "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup postgres bench "$url/$PG_DB"
        ;;
    fc)
        measure "$op" "pg_dump -Fc" "default compression: gzip level 6; to a file" \
            file "$R/dump.fc" -- pg_dump -Fc -f "$R/dump.fc" -d "$PG_DB"
        ;;
    zst)
        # shellcheck disable=SC2016 # expanded by the inner bash
        measure "$op" "pg_dump -Fc -Z0 | zstd -T0 -3" "to a file" file "$R/dump.fc.zst" -- \
            bash -c 'set -o pipefail; pg_dump -Fc -Z0 -d "$1" | zstd -T0 -3 -q -c >"$2"' \
            _ "$PG_DB" "$R/dump.fc.zst"
        ;;
    esac
}

pg_restore_run() {
    pg_checkpoint
    case $1 in
    sb)
        measure "$op" strongbox "restore bench:latest --target postgresql://…/$r_sb, created" \
            pgdb "$r_sb|$fp" -- \
            "$SB" -q --repo "$R/sb-repo" restore bench:latest --target "$url/$r_sb"
        pg_drop "$r_sb"
        ;;
    fc)
        # shellcheck disable=SC2016
        measure "$op" "pg_restore -d" "of the pg_dump -Fc file; createdb -T template0 first" \
            pgdb "$r_fc|$fp" -- \
            bash -c 'createdb -T template0 "$1" && pg_restore -d "$1" "$2"' _ "$r_fc" "$R/dump.fc"
        pg_drop "$r_fc"
        ;;
    zst)
        # shellcheck disable=SC2016
        measure "$op" "zstd -dc | pg_restore -d" "of the -Z0 | zstd file; createdb -T template0 first" \
            pgdb "$r_zst|$fp" -- \
            bash -c 'set -o pipefail; createdb -T template0 "$1" && zstd -dc "$2" | pg_restore -d "$1"' \
            _ "$r_zst" "$R/dump.fc.zst"
        pg_drop "$r_zst"
        ;;
    esac
}

bench_sqlite() {
    results_for sqlite
    R=$W/run/sqlite
    rm -rf "$R"
    mkdir -p "$R"
    local db=$W/data/sqlite.db fp
    log "== SQLite: $SQLITE_ROWS rows"
    python3 "$BENCH/dbgen.py" sqlite --out "$db" --rows "$SQLITE_ROWS" --seed "$SEED" >&2
    fp=$(python3 "$BENCH/dbgen.py" count --db "$db")
    echo "$(mb "$(fsize "$db")") MiB file; rows: $fp" >"$W/sqlite.data"
    log "sqlite: $(cat "$W/sqlite.data")"

    # 1. backups, 2. restores, each to a new file; medians of rotating rounds (in_rounds).
    local op=backup
    in_rounds "$DB_ROUNDS" sqlite_backup_run sb plain
    op=restore
    in_rounds "$DB_ROUNDS" sqlite_restore_run sb cp zstd
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# One run of a tool in bench_sqlite, named by in_rounds; uses bench_sqlite's locals.
sqlite_backup_run() {
    cat "$db" >/dev/null
    case $1 in
    sb)
        rm -rf "$R/sb-repo"
        measure "$op" strongbox "backup sqlite: online backup API, zstd:3" total "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup sqlite bench "$db"
        ;;
    plain)
        rm -f "$R/copy.db"
        # shellcheck disable=SC2016
        measure "$op" "sqlite3 .backup + zstd -T0 -3" "output: the .zst" file "$R/copy.db.zst" -- \
            bash -c 'sqlite3 "$1" ".backup \"$2\"" && zstd -T0 -3 -q "$2"' _ "$db" "$R/copy.db"
        rm -f "$R/copy.db"
        ;;
    esac
}

sqlite_restore_run() {
    case $1 in
    sb)
        measure "$op" strongbox "restore bench:latest --target FILE" sqlite "$R/restore-sb.db|$fp" -- \
            "$SB" -q --repo "$R/sb-repo" restore bench:latest --target "$R/restore-sb.db"
        rm -f "$R/restore-sb.db"
        ;;
    cp)
        # shellcheck disable=SC2016
        measure "$op" "zstd -d + cp" "decompress beside the target, copy into place" \
            sqlite "$R/restore-cp.db|$fp" -- \
            bash -c 'zstd -d -q -f "$1" -o "$2" && cp "$2" "$3"' _ "$R/copy.db.zst" "$R/stage.db" "$R/restore-cp.db"
        rm -f "$R/restore-cp.db" "$R/stage.db"
        ;;
    zstd)
        measure "$op" "zstd -d" "straight to the target file" sqlite "$R/restore-zstd.db|$fp" -- \
            zstd -d -q -f "$R/copy.db.zst" -o "$R/restore-zstd.db"
        rm -f "$R/restore-zstd.db"
        ;;
    esac
}

bench_scale() {
    results_for scale
    local R=$W/run/scale s n src repo
    rm -rf "$R"
    mkdir -p "$R"
    for s in $(awk -v s="$SCALE" 'BEGIN { print s / 10, s }'); do
        n=$(awk -v s="$s" 'BEGIN { printf "%d", 1000000 * s }')
        src=$W/data/sparse-$n
        repo=$R/repo-$n
        log "== scale: $n files"
        python3 "$BENCH/gen.py" ensure --tree sparse --dir "$src" --seed "$SEED" --scale "$s" >&2
        "$SB" -q --repo "$repo" init
        warm "$src"
        measure "full" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" backup files bench "$src" --full
        measure "no-change" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" backup files bench "$src"
        # Commands that read a whole listing: memory should not grow with it either.
        measure "ls" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" ls bench:latest
        measure "verify quick" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" verify bench:latest
        measure "verify deep" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" verify bench:latest --level deep
        measure "restore" "$n" "" restore "$TG/scale-restore-$n|$(fingerprint "$src")" -- \
            "$SB" -q --repo "$repo" restore bench:latest --target "$TG/scale-restore-$n"
        rm -rf "$TG/scale-restore-$n"
        python3 "$BENCH/gen.py" mutate --tree sparse --dir "$src" --seed "$SEED" --scale "$s" --fraction 0.01 >&2
        measure "1 % changed" "$n" "" delta "$repo" -- "$SB" -q --repo "$repo" backup files bench "$src"
        python3 "$BENCH/gen.py" ensure --tree sparse --dir "$src" --seed "$SEED" --scale "$s" >&2
        measure "prune" "$n" "keeps all 3" delta "$repo" -- "$SB" -q --repo "$repo" prune bench --keep-last 3
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$repo"
    done
    # measure's rows (step, files, wall s, CPU s, RSS MB, stored MB, status): linear in the
    # number of files between the two sizes, extended to 10M.
    awk -F '\t' '
        $7 != "ok" { failed[$1] = 1; next }
        { key = $1; if (!(key in n1)) { order[++k] = key; n1[key] = $2; t1[key] = $3; r1[key] = $5; b1[key] = $6 }
          else { n2[key] = $2; t2[key] = $3; r2[key] = $5; b2[key] = $6 } }
        function at(v1, v2, x) { return v2 + (v2 - v1) / (N2 - N1) * (x - N2) }
        END {
            N1 = n1[order[1]]; N2 = n2[order[1]]
            printf "| backup | %d files: time, peak RSS, stored | %d files | per extra file | projected at 10,000,000 files |\n", N1, N2
            print "|---|---|---|---|---|"
            for (i = 1; i <= k; i++) {
                key = order[i]
                if (key in failed) { printf "| %s | failed: see the logs |||\n", key; continue }
                printf "| %s | %.2f s, %.0f MB, %.2f MB | %.2f s, %.0f MB, %.2f MB | %.2f µs, %.0f B RSS, %.0f B stored | %.0f s, %.0f MB RSS, %.0f MB stored |\n",
                    key, t1[key], r1[key], b1[key], t2[key], r2[key], b2[key],
                    (t2[key] - t1[key]) / (N2 - N1) * 1e6, (r2[key] - r1[key]) * 1048576 / (N2 - N1), (b2[key] - b1[key]) * 1048576 / (N2 - N1),
                    at(t1[key], t2[key], 1e7), at(r1[key], r2[key], 1e7), at(b1[key], b2[key], 1e7)
            }
            print ""
            print "Targets (issue: speed and scale): no-change backup of 1M files under 100 MB peak RSS and flat from 100k to 1M; a no-change snapshot of 1M files stores at most 64 KB. Restore and verify deep stream the listing beside the archives: what they hold per file is the directories and links (about 12 B per file on this tree; it was 320-340 B when they held the listing)."
        }' "$RESULTS" | tee "$W/scale.md" >&2
}

# A chain of 20 snapshots of the smaller sparse tree, 1 % of its files rewritten (to other
# bytes of the same length) before each incremental, so that the 20th tree holds what the 1st
# does and only the chain differs (writing a line into each took the tree from 30,000 to
# 42,000 non-empty files, and a whole snapshot of that tree restored 6 % slower than the 1st);
# then the 1st and the 20th are restored in alternating order (5 pairs), each
# after priming memory (see prime_memory). The 20th reads 20 archives and a whole listing
# with 19 deltas over it. Restores go to tmpfs when /dev/shm is writable: on ext4 here a
# restore of 100k files varies 5x between runs. The same chain is also backed up to s3s-fs
# on loopback, where each of those objects is a request, and restored from it (3 pairs).
bench_chain() {
    results_for chain
    local R=$W/run/chain n src repo rt i first last fp_first fp_last s3=
    n=$(awk -v s="$SCALE" 'BEGIN { printf "%d", 100000 * s }')
    src=$R/src
    repo=$R/repo
    rm -rf "$R"
    mkdir -p "$R"
    log "== chain: 20 snapshots of $n files"
    python3 "$BENCH/gen.py" ensure --tree sparse --dir "$W/data/sparse-$n" --seed "$SEED" --scale "$(awk -v s="$SCALE" 'BEGIN { print s / 10 }')" >&2
    cp -a "$W/data/sparse-$n" "$src"
    if start_s3 "$R/s3root"; then
        s3=s3://$S3_BUCKET/chain
        "$SB" -q --repo "$s3" init
    fi
    "$SB" -q --repo "$repo" init
    # back_up: the same snapshot of the tree into each repository
    back_up() { for r in "$repo" ${s3:+"$s3"}; do "$SB" -q --repo "$r" backup files chain "$src"; done; }
    back_up
    fp_first=$(fingerprint "$src")
    for i in $(seq 2 20); do
        python3 - "$src" "$i" <<'PY'
import os, random, sys
root, step = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
for path in random.Random(step).sample(files, max(1, len(files) // 100)):
    # other bytes of the same length: the 20th tree is the 1st one's shape
    size = os.path.getsize(path)
    with open(path, "w") as f:
        f.write((f"step {step} " * size)[:size])
    os.utime(path, (1_700_000_000 + step, 1_700_000_000 + step))
PY
        back_up
    done
    fp_last=$(fingerprint "$src")
    rt=$R
    if [[ -w /dev/shm ]]; then rt=$(mktemp -d /dev/shm/strongbox-chain.XXXX); fi
    # chain_pairs REPO PAIRS LABEL: the 1st and the 20th snapshot of REPO restored in turn
    chain_pairs() {
        read -r first last < <("$SB" --repo "$1" snapshots chain --json |
            python3 -c 'import json, sys; s = json.load(sys.stdin); print(s[0]["id"], s[-1]["id"])')
        for ((i = 0; i < $2; i++)); do
            prime_memory $((256 << 20))
            measure "restore" "1st$3" "" restore "$rt/first|$fp_first" -- \
                "$SB" -q --repo "$1" restore "$first" --target "$rt/first"
            rm -rf "$rt/first"
            prime_memory $((256 << 20))
            measure "restore" "20th$3" "" restore "$rt/last|$fp_last" -- \
                "$SB" -q --repo "$1" restore "$last" --target "$rt/last"
            rm -rf "$rt/last"
        done
    }
    chain_pairs "$repo" 5 ""
    if [[ -n $s3 ]]; then
        chain_pairs "$s3" 3 " from S3"
        stop_s3
    fi
    [[ $rt == "$R" ]] || rm -rf "$rt"
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
    awk -F '\t' "$AWK_MEDIAN"'
        $7 != "ok" { bad = 1; next }
        { t[$2] = t[$2] " " $3 }
        END {
            if (bad) { print "chain: a restore failed or differed; see the logs"; exit }
            a = median(t["1st"]); b = median(t["20th"])
            printf "restore of the 1st snapshot: %.2f s; of the 20th: %.2f s (medians of 5, wall: %s /%s); 20th / 1st: %.2fx (target <= 1.1x)\n", a, b, t["1st"], t["20th"], b / a
            if (t["1st from S3"] == "") exit
            a = median(t["1st from S3"]); b = median(t["20th from S3"])
            printf "from s3s-fs on loopback, the 1st: %.2f s; the 20th: %.2f s (medians of 3, wall: %s /%s); 20th / 1st: %.2fx\n", a, b, t["1st from S3"], t["20th from S3"], b / a
        }' "$RESULTS" | tee "$W/chain.txt" >&2
}

bench_wal() {
    local n R=$W/run/wal i
    n=$(awk -v s="$SCALE" 'BEGIN { n = int(100 * s); print (n < 20 ? 20 : n) }')
    rm -rf "$R"
    mkdir -p "$R/src" "$R/cp"
    log "== WAL: $n segments of 16 MiB"
    # WAL-like pages: headers and zeroed tails, tuples of repeated text, some random bytes.
    python3 - "$R/src" "$n" "$SEED" <<'PY'
import os, random, sys
out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12))) for _ in range(500)]
for i in range(1, n + 1):
    with open(os.path.join(out, "00000001%016X" % i), "wb") as f:
        for _ in range(2048):  # 8 KiB pages
            text = b" ".join(rng.choice(words) for _ in range(400))[:4096]
            page = os.urandom(1024) + text + bytes(8192 - 1024 - len(text))
            f.write(page[:8192])
PY
    cat "$R"/src/* >/dev/null
    "$SB" -q --repo "$R/sb-repo" init
    # Each segment is pushed, then copied: both see the same state of the machine (page cache,
    # write-back), which drifts over a run by more than the difference being measured. The
    # segment is read first, untimed: PostgreSQL hands over a segment it has just written,
    # but proactive reclaim (DAMON here) evicts pages of the generated ones within seconds,
    # and only the push, which reads each first, would pay for that.
    local i a b c sb_us=0 cp_us=0 sb cp
    sync
    for i in "$R"/src/*; do
        cat "$i" >/dev/null
        a=${EPOCHREALTIME/./}
        "$SB" -q --repo "$R/sb-repo" wal push bench "$i"
        b=${EPOCHREALTIME/./}
        cp "$i" "$R/cp/" && sync "$R/cp/${i##*/}"
        c=${EPOCHREALTIME/./}
        sb_us=$((sb_us + b - a))
        cp_us=$((cp_us + c - b))
    done
    sb=$(awk -v us="$sb_us" 'BEGIN { printf "%.3f", us / 1e6 }')
    cp=$(awk -v us="$cp_us" 'BEGIN { printf "%.3f", us / 1e6 }')
    awk -v n="$n" -v sb="$sb" -v cp="$cp" -v stored="$(dsize "$R/sb-repo")" -v raw="$(dsize "$R/src")" 'BEGIN {
        printf "wal push: %d segments in %.2f s = %.1f segments/s (%.0f MiB/s), stored %.0f MiB of %.0f MiB\n", n, sb, n / sb, raw / 1048576 / sb, stored / 1048576, raw / 1048576
        printf "cp + sync FILE: %d segments in %.2f s = %.1f segments/s\n", n, cp, n / cp
        printf "wal push / cp + fsync: %.2fx (target >= 20 segments/s, <= 2x)\n", sb / cp
    }' | tee "$W/wal.txt" >&2
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# --------------------------------------------------------------------------- main

main() {
    local sec
    for sec in $SECTIONS; do
        case $sec in files | s3 | db | refs | scale | chain | wal) ;; *) die "unknown section '$sec' (files, s3, db, refs, scale, chain, wal)" ;; esac
    done
    for sec in $DBS; do
        case $sec in postgres | sqlite) ;; *) die "unknown database '$sec' (postgres, sqlite)" ;; esac
    done
    mkdir -p "$W/data" "$W/run"
    journaled_targets
    LOGS=$W/logs
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
    install_missing
    build_strongbox

    local started=$EPOCHREALTIME load_before load_after busy0 reclaim0 reported0
    busy0=$(cpu_busy)
    reclaim0=$(direct_reclaim)
    reported0=$(reported_memory)
    load_before=$(uptime)
    start_load_sampler
    local vers
    vers=$(versions)
    log "versions:"
    echo "$vers" >&2
    log "load before: $load_before"

    local tree
    if section files; then
        for tree in $TREES; do
            case $tree in media | small) ;; *) die "unknown tree '$tree' (media, small)" ;; esac
            bench_tree "$tree"
        done
    fi
    if section s3; then bench_s3; fi
    if section refs; then
        local n
        n=$(awk -v s="$SCALE" 'BEGIN { printf "%d", 1000000 * s }')
        log "bundle reference cross-check, $n references"
        (cd "$ROOT" && cargo build --release --locked -q -p strongbox-engine --example bundle_references)
        "$(dirname "$SB")/examples/bundle_references" "$n" | tee "$W/refs.txt" >&2
    fi
    if section scale; then bench_scale; fi
    if section chain; then bench_chain; fi
    if section wal; then bench_wal; fi
    if section db; then
        if want_db postgres; then bench_postgres; fi
        if want_db sqlite; then bench_sqlite; fi
    fi

    stop_load_sampler
    load_after=$(uptime)
    local total
    total=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    local load_stats others
    load_stats=$(awk 'NF { n++; s += $1; if ($1 > m) m = $1 } END { if (n) printf "1-min load average over the run: mean %.2f, max %.2f (%d samples, 5 s apart)", s / n, m, n }' "$W/load.samples")
    other_cpu "$busy0" "$total" >"$W/other-cpu.txt"
    others=$(cat "$W/other-cpu.txt")
    log "$others"

    {
        echo "# strongbox benchmark"
        echo
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), BENCH_SCALE=$SCALE, BENCH_SEED=$SEED, sections: $SECTIONS, total run time ${total} s."
        echo
        echo "$vers"
        echo
        echo "Restores wrote into: $TG_FS."
        echo
        echo "Machine load: before \`$load_before\`; after \`$load_after\`; $load_stats"
        echo "(the benchmark's own tools count in it). $others."
        awk -v a="$reclaim0" -v b="$(direct_reclaim)" -v p="$(getconf PAGESIZE)" 'BEGIN {
            printf "Memory reclaimed by the processes allocating it (direct reclaim) during the run: %.0f MiB%s\n",
                (b - a) * p / 1048576, (b > a ? " (whichever tool was allocating then paid for it, in system time)" : "") }'
        local reported
        reported=$(reported_memory)
        if [[ -n $reported0 && -n $reported ]]; then
            awk -v a="$reported0" -v b="$reported" 'BEGIN {
                printf "Free memory the guest handed back to the host during the run: %.0f MiB (whichever tool touches it again pays for it, in system time)\n", (b - a) / 1024 }'
        fi
        if section files; then
            for tree in $TREES; do
                echo
                case $tree in
                    media) echo "## media tree (~1 GiB × $SCALE: 60 % incompressible, 25 % ~2x, 15 % text ~6x)" ;;
                    small) echo "## small files ($(awk -v s="$SCALE" 'BEGIN { printf "%d", 100000 * s }') files of 1-8 KiB, 60 % text)" ;;
                esac
                echo
                [[ -s $W/data/$tree.marker ]] && printf 'Data: %s\n\n' "$(cat "$W/data/$tree.marker")"
                [[ -s $W/mutate-$tree.txt ]] && printf 'The 2 %% change: %s\n\n' "$(cat "$W/mutate-$tree.txt")"
                python3 "$BENCH/table.py" "$W/results-$tree.tsv"
                if grep -q "^full backup	strongbox-age	" "$W/results-$tree.tsv"; then
                    echo
                    awk -F'\t' '$2 == "strongbox" || $2 == "strongbox-age" { w[$1 FS $2] = $3; r[$1 FS $2] = $5 }
                        END {
                            split("full backup|full restore", list, "|")
                            for (i = 1; i <= 2; i++) {
                                p = w[list[i] FS "strongbox"]; e = w[list[i] FS "strongbox-age"]
                                if (p > 0 && e > 0) printf "Encrypted ÷ plain, %s, one run each (the encrypted one second, so its ratio is the pairs below): %.2f× wall (%.2f s vs %.2f s), peak RSS %s MB (target < 100 MB)\n", list[i], e / p, e, p, r[list[i] FS "strongbox-age"]
                            }
                        }' "$W/results-$tree.tsv"
                fi
                if [[ $tree == media && -s $W/partial-media.txt ]]; then
                    echo
                    cat "$W/partial-media.txt"
                fi
                if [[ $tree == media && -s $W/encryption-pairs.tsv ]]; then
                    echo
                    awk -F'\t' "$AWK_MEDIAN"'{ n[$1 FS $2]++; v[$1 FS $2] = v[$1 FS $2] " " $3; c[$1 FS $2] = c[$1 FS $2] " " $4; u[$1 FS $2] = u[$1 FS $2] " " $5 }
                        END {
                            split("full backup|full restore", list, "|")
                            for (i = 1; i <= 2; i++) {
                                p = median(v[list[i] FS "plain"]); e = median(v[list[i] FS "age"])
                                pc = median(c[list[i] FS "plain"]); ec = median(c[list[i] FS "age"])
                                pu = median(u[list[i] FS "plain"]); eu = median(u[list[i] FS "age"])
                                if (p > 0 && e > 0 && pc > 0 && pu > 0) printf "Encrypted ÷ plain, %s, medians of %d pairs run in alternating order: %.2f× wall (%.2f s vs %.2f s; target ≤ 1.10×), %.2f× CPU (%.2f s vs %.2f s), %.2f× user CPU (%.2f s vs %.2f s)\n", list[i], n[list[i] FS "age"], e / p, e, p, ec / pc, ec, pc, eu / pu, eu, pu
                            }
                        }' "$W/encryption-pairs.tsv"
                fi
            done
            echo
            echo "Notes: wall = elapsed time; CPU = user+sys of the command and the children it waited"
            echo "for (zstd/gzip under tar); peak RSS = the largest single process. Output MB: repository"
            echo "size after a full backup, repository growth for later backups, archive size for tar"
            echo "(the --listed-incremental snapshot file not counted), restored file bytes for a restore."
            echo "All tools run on a warm page cache; times exclude the final write-back (sync runs"
            echo "untimed between steps). restic always encrypts; borg runs with -e none; strongbox and"
            echo "tar do not encrypt. The plain tar + zstd restore extracts the full archive, i.e. the"
            echo "state before the 2 % change; every other restore is of the latest state."
        fi
        if section refs && [[ -s $W/refs.txt ]]; then
            echo
            echo "## bundle reference cross-check"
            echo
            cat "$W/refs.txt"
        fi
        if section scale && [[ -s $W/scale.md ]]; then
            echo
            echo "## scale: sparse trees, costs per number of files"
            echo
            cat "$W/scale.md"
        fi
        if section chain && [[ -s $W/chain.txt ]]; then
            echo
            echo "## chain: the 20th snapshot of an incremental chain against the 1st"
            echo
            cat "$W/chain.txt"
        fi
        if section wal && [[ -s $W/wal.txt ]]; then
            echo
            echo "## WAL archiving (archive_command, one process per 16 MiB segment)"
            echo
            cat "$W/wal.txt"
        fi
        if section s3; then
            echo
            echo "## S3: media tree (~1 GiB × $SCALE) to and from s3s-fs on loopback"
            echo
            [[ -s $W/data/media.marker ]] && printf 'Data: %s\n\n' "$(cat "$W/data/media.marker")"
            python3 "$BENCH/table.py" "$W/results-s3.tsv"
            echo
            echo "strongbox ÷ plain transfer, wall time (target: ≤ 1.15× both ways):"
            echo
            cat "$W/summary-s3.txt"
            echo
            echo "Notes: one s3s-fs server (storing objects as files under a temp dir on the same disk)"
            echo "serves both. Uploads use 8 MiB parts, 4 at a time, in both tools; downloads use 8 MiB"
            echo "parts, 8 at a time, in both (strongbox holds at most 8 MiB of what the parts ahead"
            echo "of the one it reads received; the rest waits in TCP). Each tool"
            echo "runs $S3_ROUNDS times per direction, in rotating order, each after priming memory;"
            echo "rows and ratios are medians. The plain transfer"
            echo "moves one file of the archive object's bytes (a copy of it): MiB/s = moved MiB ÷ wall,"
            echo "where moved is the repository's size for a strongbox backup, the archive object for a"
            echo "strongbox restore (whose output is the restored tree), the object for boto3. Both"
            echo "write what they download into the same filesystem (targets/, as the other restores). boto3"
            echo "runs without its optional CRC32 checksums (strongbox computes none either); its wall"
            echo "and CPU include Python's start-up and the boto3 import. CPU of s3s-fs is not counted."
        fi
        if section db && want_db postgres; then
            echo
            echo "## PostgreSQL"
            echo
            [[ -s $W/postgres.data ]] && printf 'Data: %s\n\n' "$(cat "$W/postgres.data")"
            python3 "$BENCH/table.py" "$W/results-postgres.tsv" --vs "pg_dump -Fc" --vs "pg_dump -Fc -Z0 | zstd -T0 -3" \
                --vs "pg_restore -d" --vs "zstd -dc | pg_restore -d"
            echo
            echo "Targets: backup at least 2× faster than pg_dump -Fc (ratio ≤ 0.50) and within 1.1× of"
            echo "pg_dump -Fc -Z0 | zstd -T0 -3."
            echo
            echo "Notes: CPU and RSS are of the client side only (pg_dump, pg_restore, zstd, strongbox),"
            echo "not of the server's backend. Output MB: repository size / dump file size for a backup,"
            echo "pg_database_size of the restored database for a restore (row counts of every table"
            echo "checked against the source). Every restore creates its database (strongbox itself,"
            echo "the others with createdb -T template0, timed); CHECKPOINT and sync run untimed before"
            echo "each step; the restored databases are dropped after their check. pgbench's data is"
            echo "very compressible (blank-padded filler columns)."
        fi
        if section db && want_db sqlite; then
            echo
            echo "## SQLite"
            echo
            [[ -s $W/sqlite.data ]] && printf 'Data: %s (%s)\n\n' "$(cat "$W/sqlite.data")" "$(cat "$W/data/sqlite.db.marker" 2>/dev/null)"
            python3 "$BENCH/table.py" "$W/results-sqlite.tsv" --vs "sqlite3 .backup + zstd -T0 -3" --vs "zstd -d + cp"
            echo
            echo "Target: backup within 1.2× of sqlite3 .backup + zstd -T0 -3."
            echo
            echo "Notes: Output MB: repository size / .zst file size for a backup, the restored file's"
            echo "size for a restore (row counts of every table checked against the source)."
        fi
    } >"$W/results.md"
    echo
    cat "$W/results.md"
    log "results written to $W/results.md; logs in $LOGS"
}

main "$@"
