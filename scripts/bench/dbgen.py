#!/usr/bin/env python3
"""Seeded SQLite benchmark database for scripts/bench.sh (cached beside its marker).

  dbgen.py sqlite --out FILE --rows N --seed S
      make FILE hold the database for (rows, seed): reuse it when FILE.marker matches,
      else generate it (into FILE.tmp, renamed when complete)
  dbgen.py count --db FILE
      print the row count of every table, "name=rows" space-separated, sorted by name

The database is a chat/message store: messages(id, room, author, created, kind, body
TEXT, attachment BLOB) plus an index on (room, created) and a small rooms table. Bodies are
Zipf-distributed pseudo-words (gen.py's vocabulary: compresses like prose), 30 % of the rows
carry a 16-80 byte random blob (incompressible, like hashes/tokens/thumbnails). ~3M rows
make ~300 MB; zstd -3 gets it to roughly 55 %.
"""

import argparse
import os
import random
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import TextGen  # noqa: E402

DBGEN_VERSION = 1  # bump when the generated content changes
ROOMS = 5000


def marker_text(args):
    return f"dbgen={DBGEN_VERSION} sqlite rows={args.rows} seed={args.seed}\n"


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def rows(args):
    rng = random.Random(f"{args.seed}:sqlite:rows")
    tg = TextGen(args.seed)
    words, cum = tg.words, tg.cum
    choices, randint, rand, randbytes = rng.choices, rng.randint, rng.random, rng.randbytes
    kinds = ("text", "text", "text", "text", "reply", "edit", "system")
    t = 1_600_000_000
    for i in range(1, args.rows + 1):
        t += randint(0, 20)
        body = " ".join(choices(words, cum_weights=cum, k=randint(3, 13)))
        blob = randbytes(randint(16, 80)) if rand() < 0.3 else None
        yield (i, randint(1, ROOMS), randint(1, 20000), t, kinds[randint(0, 6)], body, blob)


def sqlite_cmd(args):
    out = os.path.abspath(args.out)
    marker = out + ".marker"
    if read(marker) == marker_text(args) and os.path.isfile(out):
        print(f"sqlite: cached database reused ({out}, {os.path.getsize(out) / 2**20:.1f} MiB)")
        return
    for p in (marker, out, out + ".tmp", out + ".tmp-journal"):
        if os.path.exists(p):
            os.remove(p)
    tmp = out + ".tmp"
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-200000")
    db.execute("BEGIN")
    db.execute("CREATE TABLE rooms (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created INTEGER NOT NULL)")
    rng = random.Random(f"{args.seed}:sqlite:rooms")
    db.executemany("INSERT INTO rooms VALUES (?, ?, ?)",
                   ((r, f"room-{r:05d}-{rng.randbytes(4).hex()}", 1_600_000_000 - rng.randint(0, 10**7))
                    for r in range(1, ROOMS + 1)))
    db.execute("""CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room INTEGER NOT NULL REFERENCES rooms(id),
        author INTEGER NOT NULL,
        created INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        attachment BLOB)""")
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", rows(args))
    db.execute("CREATE INDEX messages_room_created ON messages (room, created)")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    os.replace(tmp, out)
    with open(marker, "w") as f:
        f.write(marker_text(args))
    print(f"sqlite: generated {args.rows} rows, {os.path.getsize(out) / 2**20:.1f} MiB ({out})")


def count_cmd(args):
    db = sqlite3.connect(f"file:{os.path.abspath(args.db)}?mode=ro", uri=True)
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    counts = []
    for n in names:
        quoted = '"' + n.replace('"', '""') + '"'
        counts.append(f"{n}={db.execute(f'SELECT count(*) FROM {quoted}').fetchone()[0]}")
    print(" ".join(counts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sqlite")
    s.add_argument("--out", required=True)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("count")
    c.add_argument("--db", required=True)
    args = ap.parse_args()
    {"sqlite": sqlite_cmd, "count": count_cmd}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
