//! A tar stream read one entry at a time, at its caller's pace.

use std::io::{self, Read};

use crate::{ArchiveEntry, ArchiveReader, Error};

/// A tar block: every header and every entry's data start on one.
const BLOCK: u64 = 512;

/// Reads a plain tar stream one entry per [`EntryCursor::next`], where
/// [`ArchiveReader::for_each`] drives the loop itself: for a caller that merges the archive
/// with another ordered stream (a listing), or reads several archives side by side.
pub struct EntryCursor<'a> {
    reader: Box<dyn Read + Send + 'a>,
    /// Bytes of the stream read so far.
    position: u64,
    /// The padding after the last entry's data, not read yet.
    pad: u64,
    last: String,
}

impl<'a> EntryCursor<'a> {
    /// Read `reader`, which starts at an entry's header (the tar stream's start, or an entry
    /// inside it).
    pub fn new<R: Read + Send + 'a>(reader: R) -> Self {
        Self {
            reader: Box::new(reader),
            position: 0,
            pad: 0,
            last: String::from("<start of archive>"),
        }
    }

    /// Read `reader` on a thread of its own, a few MiB ahead of the entries' consumer:
    /// fetching and decompressing (whatever `reader` does) overlap with hashing and writing.
    pub fn pipelined<R: Read + Send + 'static>(reader: R) -> Result<Self, Error> {
        let ahead =
            crate::ReadAhead::spawn(reader).map_err(|source| Error::ReadAhead { source })?;
        Ok(Self::new(ahead))
    }

    /// Bytes of the stream read so far: up to the end of the last entry's data (before its
    /// padding), or as far as [`Self::skip`] went.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Read and drop `bytes` bytes of the stream (to reach an entry at a known offset),
    /// counting the last entry's padding among them.
    pub fn skip(&mut self, bytes: u64) -> Result<(), Error> {
        self.pad = self.pad.saturating_sub(bytes);
        let mut reader = Counted {
            reader: &mut self.reader,
            count: &mut self.position,
        };
        let skipped = io::copy(&mut (&mut reader).take(bytes), &mut io::sink());
        match skipped {
            Ok(n) if n == bytes => Ok(()),
            Ok(_) => Err(self.corrupt(io::ErrorKind::UnexpectedEof.into())),
            Err(e) => Err(self.corrupt(e)),
        }
    }

    /// Visit the next entry, checked as [`ArchiveReader::for_each`] checks each; what the
    /// visitor leaves of its data is read past. `Ok(false)` at the end of the archive.
    pub fn next<E, F>(&mut self, mut visit: F) -> Result<bool, E>
    where
        E: From<Error>,
        F: FnMut(ArchiveEntry<'_>) -> Result<(), E>,
    {
        self.skip(self.pad)?;
        let mut seen_entry = None;
        let reader = Counted {
            reader: &mut self.reader,
            count: &mut self.position,
        };
        ArchiveReader::new(reader).first(|entry: ArchiveEntry<'_>| -> Result<(), E> {
            seen_entry = Some((entry.path.to_string(), entry.size));
            let ArchiveEntry {
                path: name,
                kind,
                size,
                mode,
                link,
                data,
            } = entry;
            let mut read = 0;
            let mut data = Counted {
                reader: data,
                count: &mut read,
            };
            visit(ArchiveEntry {
                path: name,
                kind,
                size,
                mode,
                link,
                data: &mut data,
            })?;
            let corrupt = |source| Error::Corrupt {
                context: format!("in entry {name:?}"),
                source,
            };
            // Only what the visitor left: a copy zeroes its 8 KiB buffer first, every entry.
            let drained = if *data.count < size {
                io::copy(&mut data, &mut io::sink()).map(drop)
            } else {
                Ok(())
            };
            match drained {
                Ok(()) if read == size => Ok(()),
                Ok(_) => Err(corrupt(io::ErrorKind::UnexpectedEof.into()).into()),
                Err(e) => Err(corrupt(e).into()),
            }
        })?;
        let Some((path, size)) = seen_entry else {
            return Ok(false);
        };
        // The entry's data ends padded to a whole block.
        self.pad = size.next_multiple_of(BLOCK) - size;
        self.last = path;
        Ok(true)
    }

    fn corrupt(&self, source: io::Error) -> Error {
        Error::Corrupt {
            context: format!("after entry {:?}", self.last),
            source,
        }
    }
}

/// A reader counting what is read through it into `count`.
struct Counted<'c, R> {
    reader: R,
    count: &'c mut u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArchiveWriter, EntryKind, EntryMeta};
    use rstest::rstest;

    const META: EntryMeta = EntryMeta {
        mode: 0o640,
        uid: 33,
        gid: 33,
        mtime_ns: 1_600_000_000_123_456_789,
    };

    /// An archive of a directory, files of `sizes` (one with a PAX name), and a link.
    fn archive(sizes: &[usize]) -> (Vec<u8>, Vec<String>) {
        let mut w = ArchiveWriter::new(Vec::new());
        let mut paths = vec!["d".to_string()];
        w.append_dir("d", &META).unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let path = format!("d/{}{i}", "x".repeat(if i == 1 { 120 } else { 1 }));
            let data = vec![i as u8; size];
            w.append_file(&path, &META, &data[..], size as u64).unwrap();
            paths.push(path);
        }
        w.append_symlink("e", "d", &META).unwrap();
        paths.push("e".to_string());
        (w.finish().unwrap(), paths)
    }

    #[rstest]
    #[case::empty_files(&[0, 0, 0])]
    #[case::block_sized(&[512, 1024, 512])]
    #[case::ragged(&[1, 511, 513, 70_000])]
    fn visits_every_entry_in_order_whatever_each_visitor_reads(#[case] sizes: &[usize]) {
        let (bytes, paths) = archive(sizes);
        for read_data in [false, true] {
            let mut cursor = EntryCursor::new(&bytes[..]);
            let mut seen = Vec::new();
            while cursor
                .next(|e: ArchiveEntry<'_>| {
                    let mut data = Vec::new();
                    if read_data {
                        e.data.read_to_end(&mut data).unwrap();
                        assert_eq!(data.len() as u64, e.size, "{}", e.path);
                    }
                    seen.push(e.path.to_string());
                    Ok::<_, Error>(())
                })
                .unwrap()
            {}
            assert_eq!(seen, paths, "data read: {read_data}");
        }
    }

    #[test]
    fn skips_to_an_entry_at_its_offset() {
        let mut w = ArchiveWriter::new(Vec::new());
        w.append_file("a", &META, &b"first"[..], 5).unwrap();
        let b = w.append_file("b", &META, &b"second"[..], 6).unwrap();
        let bytes = w.finish().unwrap();
        let mut cursor = EntryCursor::new(&bytes[..]);
        cursor.skip(b.offset).unwrap();
        let mut kinds = Vec::new();
        cursor
            .next(|e: ArchiveEntry<'_>| {
                kinds.push((e.path.to_string(), e.kind));
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(kinds, [("b".to_string(), EntryKind::File)]);
        assert_eq!(cursor.position(), b.offset + 512 + 6);
    }

    #[test]
    fn a_cut_stream_is_corrupt_in_the_entry_it_cuts() {
        let (bytes, _) = archive(&[10_000, 10_000]);
        let cut = &bytes[..512 + 512 + 5000];
        let mut cursor = EntryCursor::new(cut);
        assert!(
            cursor.next(|_| Ok::<_, Error>(())).unwrap(),
            "the directory"
        );
        let err = cursor.next(|_| Ok::<_, Error>(())).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { context, .. } if context == "in entry \"d/x0\""),
            "{err:?}"
        );
    }
}
