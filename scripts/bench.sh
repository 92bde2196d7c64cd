#!/usr/bin/env bash
# strongbox benchmark against tar (gzip, pigz, zstd, --listed-incremental), restic and borg.
#
# Not part of the test suite. Usage:
#   scripts/bench.sh                       # full size: ~1 GiB media tree + 100,000 small files
#   BENCH_SCALE=0.05 scripts/bench.sh      # quick run (sizes and file counts x 0.05)
#
# Environment:
#   BENCH_DIR     work dir (default /tmp/strongbox-bench): data/ (cached trees), run/, logs/, results.md
#   BENCH_SCALE   size factor, default 1.0
#   BENCH_SEED    data seed, default 42
#   BENCH_TREES   trees to run, default "media small"
#   BENCH_TOOLS   tools to run, default "strongbox tar restic borg"
#   BENCH_BORG_COMPRESSION  borg --compression, default zstd,3 (the level strongbox and tar use)
#   BENCH_SKIP_BUILD=1      use the existing target/release/strongbox
#   BENCH_STRONGBOX=PATH    benchmark this strongbox binary (no build)
#   BENCH_KEEP=1            keep repositories, archives and restores after each tree
#
# For each tree, in this order (every tool sees the same data at each step):
#   1. full backup by every tool            (warm page cache: the tree is read once first)
#   2. no-change backup by every tool
#   3. 2 % of the files are rewritten once (seeded), then every tool's backup after the change
#   4. full restore by every tool (of the latest state; plain tar of its one full archive)
# Each step runs under GNU `/usr/bin/time -v`: wall time, user+sys CPU of the process and
# the children it waited for, peak RSS (of the largest single process, e.g. tar or zstd).
# Page cache cannot be dropped reliably, so all tools run on a warm cache; `sync` runs
# (untimed) before each step so one tool's write-back does not land in the next one's time.
# Output size: a repository's total after a full backup, its growth for later backups,
# an archive's file size, and a restore's file bytes (checked against the source tree).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/scripts/bench
W=${BENCH_DIR:-/tmp/strongbox-bench}
SCALE=${BENCH_SCALE:-1.0}
SEED=${BENCH_SEED:-42}
TREES=${BENCH_TREES:-"media small"}
TOOLS=${BENCH_TOOLS:-"strongbox tar restic borg"}
BORG_COMPRESSION=${BENCH_BORG_COMPRESSION:-zstd,3}
ZSTD_CMD='zstd -T0 -3'

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " $TOOLS " == *" $1 "* ]]; }

# --------------------------------------------------------------------------- setup

install_missing() {
    local need=()
    command -v python3 >/dev/null || need+=(python3)
    command -v zstd >/dev/null || need+=(zstd)
    command -v pigz >/dev/null || need+=(pigz)
    command -v restic >/dev/null || need+=(restic)
    command -v borg >/dev/null || need+=(borgbackup)
    /usr/bin/time -v true >/dev/null 2>&1 || need+=(time)
    tar --version 2>/dev/null | grep -q 'GNU tar' || need+=(tar)
    if ((${#need[@]})); then
        local sudo=()
        [[ $(id -u) == 0 ]] || sudo=(sudo)
        log "installing: ${need[*]}"
        "${sudo[@]}" apt-get update -q
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need[@]}"
    fi
    python3 -c 'import random; random.Random(1).randbytes' 2>/dev/null ||
        die "python3 >= 3.9 is needed (random.randbytes)"
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
    echo "- gzip: $(gzip --version | head -1)"
    echo "- pigz: $(pigz --version 2>&1 | head -1)"
    echo "- restic: $(restic version 2>&1 | head -1)"
    echo "- borg: $(borg --version 2>&1 | head -1)"
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
trap stop_load_sampler EXIT

# Busy CPU seconds of the whole machine since boot (all processes, all cores).
cpu_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

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

# fingerprint DIR -> "<regular files> <bytes>"
fingerprint() { python3 "$BENCH/gen.py" fingerprint --dir "$1"; }

declare -A BROKEN=()
STEP=0

# measure OP TOOL NOTE SIZE_KIND SIZE_ARG -- CMD...
#   SIZE_KIND: total PATH (du -sb after) | delta PATH (du -sb growth) | file PATH |
#              restore "DIR|EXPECTED_FINGERPRINT"
# Appends one TSV row to $RESULTS; a failing command becomes a "failed" row, never an abort.
measure() {
    local op=$1 tool=$2 note=$3 kind=$4 arg=$5
    shift 6
    STEP=$((STEP + 1))
    local id
    id=$(printf '%s-%02d' "$TREE" "$STEP")
    local tlog=$LOGS/$id.time out=$LOGS/$id.log
    local key=${tool%% *}
    if [[ -n ${BROKEN[$key]:-} ]]; then
        log "$op / $tool: skipped (${BROKEN[$key]})"
        printf '%s\t%s\t\t\t\t\tfailed (%s)\t%s\n' "$op" "$tool" "${BROKEN[$key]}" "$note" >>"$RESULTS"
        return 0
    fi
    local before=0
    [[ $kind == delta ]] && before=$(dsize "$arg")
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
        *) bytes=0 ;;
    esac
    log "$op / $tool: ${wall}s wall, ${cpu}s CPU, ${rss} MB RSS, $(mb "$bytes") MB"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$tool" "$wall" "$cpu" "$rss" "$(mb "$bytes")" \
        "$status" "$note" >>"$RESULTS"
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

# environment of restic and borg (`env -C DIR VARS... CMD` runs them in DIR)
RV=()
BV=()

bench_tree() {
    TREE=$1
    local src=$W/data/$TREE
    R=$W/run/$TREE
    RESULTS=$W/results-$TREE.tsv
    STEP=0
    BROKEN=()
    : >"$RESULTS"
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

    # 1. full backups
    local op="full backup"
    if want strongbox; then
        warm "$src"
        measure "$op" strongbox "$sbnote" total "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup files bench "$src" --full
    fi
    if want tar; then
        warm "$src"
        measure "$op" "tar + gzip" "tar czf" file "$R/full.tar.gz" -- tar -czf "$R/full.tar.gz" -C "$src" .
        warm "$src"
        measure "$op" "tar + pigz" "" file "$R/full.tar.pigz.gz" -- tar -I pigz -cf "$R/full.tar.pigz.gz" -C "$src" .
        warm "$src"
        measure "$op" "tar + zstd" "-T0 -3" file "$R/full.tar.zst" -- tar -I "$ZSTD_CMD" -cf "$R/full.tar.zst" -C "$src" .
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
    op="no-change backup"
    if want strongbox; then
        warm "$src"
        measure "$op" strongbox incremental delta "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup files bench "$src" --incremental
    fi
    if want tar; then
        warm "$src"
        measure "$op" "tar incremental" "level 1" file "$R/incr1.tar.zst" -- \
            tar --listed-incremental="$R/tar.snar" -I "$ZSTD_CMD" -cf "$R/incr1.tar.zst" -C "$src" .
    fi
    if want restic; then
        warm "$src"
        measure "$op" restic "" delta "$R/restic" -- env -C "$src" "${RV[@]}" restic -r "$R/restic" backup .
    fi
    if want borg; then
        warm "$src"
        measure "$op" borg "" delta "$R/borg" -- \
            env -C "$src" "${BV[@]}" borg create "$bc" "$R/borg::b2-nochange" .
    fi

    # 3. the 2 % change, applied once, then every tool's backup
    python3 "$BENCH/gen.py" mutate --tree "$TREE" --dir "$src" --seed "$SEED" --scale "$SCALE" |
        tee "$W/mutate-$TREE.txt" >&2
    fp1=$(fingerprint "$src")
    op="backup after 2 % change"
    if want strongbox; then
        warm "$src"
        measure "$op" strongbox incremental delta "$R/sb-repo" -- \
            "$SB" -q --repo "$R/sb-repo" backup files bench "$src" --incremental
    fi
    if want tar; then
        warm "$src"
        measure "$op" "tar incremental" "level 2" file "$R/incr2.tar.zst" -- \
            tar --listed-incremental="$R/tar.snar" -I "$ZSTD_CMD" -cf "$R/incr2.tar.zst" -C "$src" .
    fi
    if want restic; then
        warm "$src"
        measure "$op" restic "" delta "$R/restic" -- env -C "$src" "${RV[@]}" restic -r "$R/restic" backup .
    fi
    if want borg; then
        warm "$src"
        measure "$op" borg "" delta "$R/borg" -- \
            env -C "$src" "${BV[@]}" borg create "$bc" "$R/borg::b3-changed" .
    fi

    # 4. restores (of the latest snapshot, i.e. the changed tree)
    op="full restore"
    local t
    if want strongbox; then
        t=$R/restore-sb
        rm -rf "$t"
        measure "$op" strongbox "bench:latest" restore "$t|$fp1" -- \
            "$SB" -q --repo "$R/sb-repo" restore bench:latest --target "$t"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi
    if want tar; then
        t=$R/restore-tar
        rm -rf "$t" && mkdir -p "$t"
        measure "$op" "tar + zstd" "full archive = pre-change state" restore "$t|$fp0" -- \
            tar -I 'zstd -T0' -xf "$R/full.tar.zst" -C "$t"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
        t=$R/restore-tar-chain
        rm -rf "$t" && mkdir -p "$t"
        # shellcheck disable=SC2016 # expanded by the inner bash
        measure "$op" "tar incremental" "levels 0+1+2" restore "$t|$fp1" -- \
            bash -c 'set -e; for a in "$@"; do tar --listed-incremental=/dev/null -I "zstd -T0" -xf "$a" -C "$0"; done' \
            "$t" "$R/incr0.tar.zst" "$R/incr1.tar.zst" "$R/incr2.tar.zst"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi
    if want restic; then
        t=$R/restore-restic
        rm -rf "$t"
        measure "$op" restic "latest" restore "$t|$fp1" -- env "${RV[@]}" restic -r "$R/restic" restore latest --target "$t"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi
    if want borg; then
        t=$R/restore-borg
        rm -rf "$t" && mkdir -p "$t"
        measure "$op" borg "extract" restore "$t|$fp1" -- \
            env -C "$t" "${BV[@]}" borg extract "$R/borg::b3-changed"
        [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$t"
    fi

    # undo the change so the cached tree stays pristine for the next run
    python3 "$BENCH/gen.py" ensure --tree "$TREE" --dir "$src" --seed "$SEED" --scale "$SCALE" >&2
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$R"
}

# --------------------------------------------------------------------------- main

main() {
    mkdir -p "$W/data" "$W/run"
    LOGS=$W/logs
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
    install_missing
    build_strongbox

    local started=$EPOCHREALTIME load_before load_after busy0
    busy0=$(cpu_busy)
    load_before=$(uptime)
    start_load_sampler
    local vers
    vers=$(versions)
    log "versions:"
    echo "$vers" >&2
    log "load before: $load_before"

    local tree
    for tree in $TREES; do
        case $tree in media | small) ;; *) die "unknown tree '$tree' (media, small)" ;; esac
        bench_tree "$tree"
    done

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
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), BENCH_SCALE=$SCALE, BENCH_SEED=$SEED, total run time ${total} s."
        echo
        echo "$vers"
        echo
        echo "Machine load: before \`$load_before\`; after \`$load_after\`; $load_stats"
        echo "(the benchmark's own tools count in it). $others."
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
    } >"$W/results.md"
    echo
    cat "$W/results.md"
    log "results written to $W/results.md; logs in $LOGS"
}

main "$@"
