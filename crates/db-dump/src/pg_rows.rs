//! Row counts read from a `pg_dump --format=custom --compress=0` archive as it streams by.
//!
//! Each table's data is its `COPY … TO stdout` text, in which a row ends with the only
//! unescaped newline it has, followed by pg_dump's end marker `\.` and two empty lines.
//! Counting the newlines of each table's data blocks gives the rows the dump holds, without a
//! second scan of every table on the server.
//!
//! The archive is read as pg_dump writes it to a pipe: a header, the table of contents (each
//! entry's dump id, description, tag and schema), then one data block per entry that has
//! data: a block type, the dump id and length-prefixed chunks ending with an empty one.
//! Archive versions 1.12 (PostgreSQL 9.0) to 1.16 are read; any other, or a compressed
//! archive, is refused with its reason, and the caller counts with `count(*)` instead.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

/// A table's data entry in the table of contents.
const TABLE_DATA: &[u8] = b"TABLE DATA";
/// What pg_dump writes after a table's rows.
const END_OF_COPY: &[u8] = b"\\.\n\n\n";
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// Oldest and newest archive versions read (major, minor).
const OLDEST: (u8, u8) = (1, 12);
const NEWEST: (u8, u8) = (1, 16);
/// No string in a table of contents comes near this; a larger one is a misread.
const MAX_STRING: i64 = 1 << 30;

/// Where the reader is in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Toc {
        left: i64,
    },
    /// Between data blocks: the archive may end here.
    Block,
    /// A chunk's length, in a table's block (`blob: false`) or a large object's.
    Chunk {
        blob: bool,
    },
    Data {
        blob: bool,
        left: usize,
    },
    /// The next large object's oid in a block of them; 0 ends the block.
    Blob,
}

/// The archive's layout, from its header.
#[derive(Debug, Clone, Copy)]
struct Layout {
    minor: u8,
    int_size: usize,
    off_size: usize,
}

/// Counts each table's rows in a custom-format archive fed to it in pieces of any size.
#[derive(Debug)]
pub(crate) struct RowCounter {
    state: State,
    layout: Option<Layout>,
    /// Bytes of an item not whole yet, read again once more arrive.
    carry: Vec<u8>,
    /// `schema.table` of each table's data entry, by dump id, until its block is read.
    tables: HashMap<i64, String>,
    /// The data block being read, when it is a table's: its `schema.table` and rows so far.
    current: Option<(String, Tally)>,
    /// Each table's rows (`schema.table`), once its block has ended.
    rows: BTreeMap<String, u64>,
    failure: Option<String>,
}

/// Newlines in a table's data, and its last bytes.
#[derive(Debug, Default)]
struct Tally {
    newlines: u64,
    tail: [u8; END_OF_COPY.len()],
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        self.newlines += memchr::memchr_iter(b'\n', bytes).count() as u64;
        let keep = self.tail.len();
        if bytes.len() >= keep {
            self.tail.copy_from_slice(&bytes[bytes.len() - keep..]);
        } else {
            self.tail.rotate_left(bytes.len());
            self.tail[keep - bytes.len()..].copy_from_slice(bytes);
        }
    }

    /// The rows, once the data has ended: its newlines but the end marker's.
    fn rows(&self) -> Option<u64> {
        (self.tail == END_OF_COPY).then(|| self.newlines - 3)
    }
}

/// Why a step stopped: the bytes at hand end inside its item, or the archive is not one
/// this reads.
enum Stop {
    Short,
    Bad(String),
}

fn bad<T>(reason: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Bad(reason.into()))
}

/// Reads the archive's primitives from a slice.
struct Input<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let bytes = self.buf.get(self.pos..self.pos + n).ok_or(Stop::Short)?;
        self.pos += n;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    /// A sign byte, then `size` bytes, least significant first.
    fn int(&mut self, size: usize) -> Result<i64, Stop> {
        let negative = self.byte()? != 0;
        let magnitude = self
            .take(size)?
            .iter()
            .rev()
            .fold(0i64, |acc, &b| (acc << 8) | i64::from(b));
        Ok(if negative { -magnitude } else { magnitude })
    }

    /// A length (-1 for none), then that many bytes.
    fn string(&mut self, size: usize) -> Result<Option<&'a [u8]>, Stop> {
        match self.int(size)? {
            -1 => Ok(None),
            len @ 0..MAX_STRING => Ok(Some(self.take(len as usize)?)),
            len => bad(format!("a string of {len} bytes in the table of contents")),
        }
    }
}

impl RowCounter {
    pub(crate) fn new() -> Self {
        RowCounter {
            state: State::Head,
            layout: None,
            carry: Vec::new(),
            tables: HashMap::new(),
            current: None,
            rows: BTreeMap::new(),
            failure: None,
        }
    }

    /// Read the next piece of the archive.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        // An item cut at the end of the last piece is completed from this one; the carry
        // grows geometrically so that a large table-of-contents entry is not parsed again
        // for every few bytes.
        while !self.carry.is_empty() && !data.is_empty() && self.failure.is_none() {
            let grow = data.len().min(self.carry.len().max(64));
            self.carry.extend_from_slice(&data[..grow]);
            data = &data[grow..];
            let carry = std::mem::take(&mut self.carry);
            let used = self.run(&carry);
            self.carry = carry;
            self.carry.drain(..used);
        }
        if self.carry.is_empty() && self.failure.is_none() {
            let used = self.run(data);
            self.carry.extend_from_slice(&data[used..]);
        }
    }

    /// Each table's rows (`schema.table`), or why the archive could not be read.
    pub(crate) fn finish(self) -> Result<BTreeMap<String, u64>, String> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.state != State::Block || !self.carry.is_empty() {
            return Err(format!("the archive ends inside {}", self.state.describe()));
        }
        Ok(self.rows)
    }

    /// Take as many steps as `buf` holds whole; returns the bytes used.
    fn run(&mut self, buf: &[u8]) -> usize {
        let mut input = Input { buf, pos: 0 };
        loop {
            let start = input.pos;
            match self.step(&mut input) {
                Ok(()) => {}
                Err(Stop::Short) => return start,
                Err(Stop::Bad(failure)) => {
                    self.failure = Some(failure);
                    return buf.len();
                }
            }
        }
    }

    /// One item of the archive; the state moves only when it was read whole.
    fn step(&mut self, input: &mut Input<'_>) -> Result<(), Stop> {
        let Some(layout) = self.layout else {
            return self.head(input);
        };
        let size = layout.int_size;
        self.state = match self.state {
            State::Head => unreachable!("the layout is known once the header is read"),
            State::Toc { left: 0 } => State::Block,
            State::Toc { left } => {
                self.toc_entry(input, layout)?;
                State::Toc { left: left - 1 }
            }
            State::Block => {
                let kind = input.byte()?;
                let dump_id = input.int(size)?;
                match kind {
                    BLK_DATA => {
                        self.current = self
                            .tables
                            .remove(&dump_id)
                            .map(|table| (table, Tally::default()));
                        State::Chunk { blob: false }
                    }
                    BLK_BLOBS => State::Blob,
                    other => return bad(format!("a data block of unknown type {other}")),
                }
            }
            State::Blob => match input.int(size)? {
                0 => State::Block,
                _oid => State::Chunk { blob: true },
            },
            State::Chunk { blob } => match (input.int(size)?, blob) {
                (0, false) => {
                    if let Some((table, tally)) = self.current.take() {
                        let Some(rows) = tally.rows() else {
                            return bad(format!("the data of {table} does not end as COPY's does"));
                        };
                        self.rows.insert(table, rows);
                    }
                    State::Block
                }
                (0, true) => State::Blob,
                (len @ 1.., _) => State::Data {
                    blob,
                    left: len as usize,
                },
                (len, _) => return bad(format!("a data chunk of {len} bytes")),
            },
            State::Data { blob, left } => {
                let available = left.min(input.buf.len() - input.pos);
                if available == 0 {
                    return Err(Stop::Short);
                }
                let bytes = input.take(available)?;
                if let Some((_, tally)) = &mut self.current {
                    tally.add(bytes);
                }
                if available == left {
                    State::Chunk { blob }
                } else {
                    State::Data {
                        blob,
                        left: left - available,
                    }
                }
            }
        };
        Ok(())
    }

    fn head(&mut self, input: &mut Input<'_>) -> Result<(), Stop> {
        if input.take(5)? != b"PGDMP" {
            return bad("not a pg_dump custom-format archive");
        }
        let (major, minor, _revision) = (input.byte()?, input.byte()?, input.byte()?);
        if (major, minor) < OLDEST || (major, minor) > NEWEST {
            return bad(format!("archive version {major}.{minor} is not read"));
        }
        let (int_size, off_size, _format) = (
            usize::from(input.byte()?),
            usize::from(input.byte()?),
            input.byte()?,
        );
        if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
            return bad(format!(
                "integers of {int_size} bytes and offsets of {off_size}"
            ));
        }
        let compressed = if minor >= 15 {
            input.byte()? != 0
        } else {
            input.int(int_size)? != 0
        };
        if compressed {
            return bad("its data is compressed");
        }
        // Creation time (7 integers), then database name, server and pg_dump versions.
        for _ in 0..7 {
            input.int(int_size)?;
        }
        for _ in 0..3 {
            input.string(int_size)?;
        }
        let entries = input.int(int_size)?;
        if entries < 0 {
            return bad(format!("{entries} table-of-contents entries"));
        }
        self.layout = Some(Layout {
            minor,
            int_size,
            off_size,
        });
        self.state = State::Toc { left: entries };
        Ok(())
    }

    fn toc_entry(&mut self, input: &mut Input<'_>, layout: Layout) -> Result<(), Stop> {
        let size = layout.int_size;
        let dump_id = input.int(size)?;
        let _had_dumper = input.int(size)?;
        let (_table_oid, _oid) = (input.string(size)?, input.string(size)?);
        let (tag, desc) = (input.string(size)?, input.string(size)?);
        let _section = input.int(size)?;
        let (_definition, _drop, _copy) = (
            input.string(size)?,
            input.string(size)?,
            input.string(size)?,
        );
        let (schema, _tablespace) = (input.string(size)?, input.string(size)?);
        if layout.minor >= 14 {
            input.string(size)?; // table access method
        }
        if layout.minor >= 16 {
            input.int(size)?; // relkind
        }
        let (_owner, _with_oids) = (input.string(size)?, input.string(size)?);
        while input.string(size)?.is_some() {} // dependencies, up to a null string
                                               // Where the entry's data is: not known when pg_dump writes to a pipe.
        input.byte()?;
        input.take(layout.off_size)?;
        if let (Some(tag), Some(TABLE_DATA), Some(schema)) = (tag, desc, schema) {
            let name = crate::postgres::qualified_name(
                &String::from_utf8_lossy(schema),
                &String::from_utf8_lossy(tag),
            );
            self.tables.insert(dump_id, name);
        }
        Ok(())
    }
}

impl State {
    fn describe(&self) -> &'static str {
        match self {
            State::Head => "its header",
            State::Toc { .. } => "its table of contents",
            State::Block => "a data block's header",
            State::Chunk { .. } | State::Data { .. } | State::Blob => "a data block",
        }
    }
}

/// Passes a dump through to `out`, counting its rows on the way.
pub(crate) struct CountingWriter<'a> {
    out: &'a mut dyn Write,
    rows: RowCounter,
}

impl<'a> CountingWriter<'a> {
    pub(crate) fn new(out: &'a mut dyn Write) -> Self {
        CountingWriter {
            out,
            rows: RowCounter::new(),
        }
    }

    /// See [`RowCounter::finish`].
    pub(crate) fn finish(self) -> Result<BTreeMap<String, u64>, String> {
        self.rows.finish()
    }
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.out.write(buf)?;
        self.rows.feed(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes archives the way pg_dump does, with 4-byte integers and 8-byte offsets.
    struct Archive {
        minor: u8,
        bytes: Vec<u8>,
    }

    impl Archive {
        fn int(&mut self, v: i64) -> &mut Self {
            self.bytes.push(u8::from(v < 0));
            self.bytes
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
            self
        }

        fn string(&mut self, s: Option<&str>) -> &mut Self {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.bytes.extend_from_slice(s.as_bytes());
                    self
                }
            }
        }

        /// Header and table of contents: `(dump id, description, schema, tag)` per entry.
        fn new(minor: u8, compression: i64, entries: &[(i64, &str, &str, &str)]) -> Self {
            let mut a = Archive {
                minor,
                bytes: b"PGDMP".to_vec(),
            };
            a.bytes.extend_from_slice(&[1, minor, 0, 4, 8, 1]);
            if minor >= 15 {
                a.bytes.push(compression as u8);
            } else {
                a.int(compression);
            }
            for v in [5, 4, 3, 2, 1, 125, 0] {
                a.int(v);
            }
            a.string(Some("app"))
                .string(Some("15.4"))
                .string(Some("15.4"));
            a.int(entries.len() as i64);
            for &(id, desc, schema, tag) in entries {
                a.int(id).int(1).string(Some("1259")).string(Some("16384"));
                a.string(Some(tag)).string(Some(desc)).int(2);
                a.string(Some("CREATE TABLE x (\n  a int\n);\n"))
                    .string(Some(""))
                    .string(Some("COPY x (a) FROM stdin;\n"));
                a.string(Some(schema)).string(None);
                if a.minor >= 14 {
                    a.string(Some("heap"));
                }
                if a.minor >= 16 {
                    a.int(i64::from(b'r'));
                }
                a.string(Some("owner")).string(Some("false"));
                a.string(Some("3")).string(Some("4")).string(None);
                a.bytes.push(1); // offset not set
                a.bytes.extend_from_slice(&[0; 8]);
            }
            a
        }

        fn data(&mut self, id: i64, chunks: &[&str]) -> &mut Self {
            self.bytes.push(BLK_DATA);
            self.int(id);
            for chunk in chunks {
                self.int(chunk.len() as i64);
                self.bytes.extend_from_slice(chunk.as_bytes());
            }
            self.int(0)
        }

        fn blobs(&mut self, id: i64, blobs: &[&str]) -> &mut Self {
            self.bytes.push(BLK_BLOBS);
            self.int(id);
            for (oid, blob) in (16400..).zip(blobs) {
                self.int(oid).int(blob.len() as i64);
                self.bytes.extend_from_slice(blob.as_bytes());
                self.int(0);
            }
            self.int(0)
        }
    }

    fn count(bytes: &[u8], piece: usize) -> Result<BTreeMap<String, u64>, String> {
        let mut counter = RowCounter::new();
        for piece in bytes.chunks(piece) {
            counter.feed(piece);
        }
        counter.finish()
    }

    fn sample(minor: u8) -> Vec<u8> {
        let mut a = Archive::new(
            minor,
            0,
            &[
                (1, "ENCODING", "", "ENCODING"),
                (7, "TABLE DATA", "public", "books"),
                (8, "TABLE DATA", "Odd schema", "new\nline"),
                (9, "TABLE DATA", "public", "empty"),
                (10, "BLOBS", "", "BLOBS"),
                (11, "SEQUENCE SET", "public", "books_id_seq"),
            ],
        );
        // One row per chunk, as pg_dump writes them, and one chunk of several rows.
        a.data(
            7,
            &["1\tDune\n", "2\ta\\nb\\\\\n", "3\t\\N\n4\tx\n", "\\.\n\n\n"],
        );
        // A one-column row of an empty string is an empty line.
        a.data(8, &["\n", "\\.\n", "\n\n"]);
        a.data(9, &["\\.\n\n\n"]);
        a.blobs(10, &["not\nrows\n", "\n"]);
        a.bytes.clone()
    }

    #[test]
    fn rows_are_counted_per_table_whatever_the_pieces_it_arrives_in() {
        let want: BTreeMap<String, u64> = [
            ("Odd schema.new\nline".to_string(), 1),
            ("public.books".to_string(), 4),
            ("public.empty".to_string(), 0),
        ]
        .into();
        for minor in [12, 14, 15, 16] {
            let bytes = sample(minor);
            for piece in [1, 2, 3, 5, 7, 64, 1000, bytes.len()] {
                assert_eq!(
                    count(&bytes, piece),
                    Ok(want.clone()),
                    "1.{minor}, by {piece}"
                );
            }
        }
    }

    #[test]
    fn archives_it_cannot_count_say_why() {
        let mut newer = sample(16);
        newer[6] = 17;
        let mut not_custom = sample(16);
        not_custom[..5].copy_from_slice(b"PGDMQ");
        let mut odd_block = sample(16);
        odd_block.extend_from_slice(&[2, 0, 1, 0, 0, 0]);
        let mut negative_chunk = sample(16);
        negative_chunk.extend_from_slice(&[1, 0, 7, 0, 0, 0, 1, 5, 0, 0, 0]);
        let whole = sample(16);
        let mut unended = Archive::new(16, 0, &[(7, "TABLE DATA", "public", "t")]);
        unended.data(7, &["1\n", "\\.\n\n"]);
        let cases: [(&str, Vec<u8>, &str); 8] = [
            ("newer", newer, "archive version 1.17 is not read"),
            (
                "compressed, 1.16",
                Archive::new(16, 3, &[]).bytes,
                "its data is compressed",
            ),
            (
                "compressed, 1.14",
                Archive::new(14, 6, &[]).bytes,
                "its data is compressed",
            ),
            (
                "not custom",
                not_custom,
                "not a pg_dump custom-format archive",
            ),
            ("odd block", odd_block, "a data block of unknown type 2"),
            ("negative chunk", negative_chunk, "a data chunk of -5 bytes"),
            (
                "unended",
                unended.bytes,
                "the data of public.t does not end as COPY's does",
            ),
            (
                "cut",
                whole[..whole.len() - 3].to_vec(),
                "the archive ends inside a data block",
            ),
        ];
        for (name, bytes, want) in cases {
            for piece in [1, 7, bytes.len()] {
                assert_eq!(
                    count(&bytes, piece),
                    Err(want.to_string()),
                    "{name}, by {piece}"
                );
            }
        }
        assert_eq!(
            count(&whole[..120], 7),
            Err("the archive ends inside its table of contents".to_string())
        );
    }

    #[test]
    fn the_writer_passes_every_byte_through() {
        let bytes = sample(14);
        let mut out = Vec::new();
        let mut writer = CountingWriter::new(&mut out);
        for piece in bytes.chunks(3) {
            writer.write_all(piece).unwrap();
        }
        assert_eq!(writer.finish().unwrap()["public.books"], 4);
        assert_eq!(out, bytes);
    }
}
