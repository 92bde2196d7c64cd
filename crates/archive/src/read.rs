use std::io::{self, Read, Seek, SeekFrom};

use crate::{safe_relative_path, Error};

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (hard links, devices, FIFOs): strongbox never writes them.
    Other,
}

/// One entry of an archive, handed to [`ArchiveReader::for_each`].
pub struct ArchiveEntry<'e> {
    /// The entry's relative path, checked by [`safe_relative_path`], without a trailing `/`.
    pub path: &'e str,
    /// Its kind.
    pub kind: EntryKind,
    /// Size of its data in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Target of a symbolic link.
    pub link: Option<String>,
    /// The entry's data.
    pub data: &'e mut dyn Read,
}

/// Reads a plain tar stream (decompress it first: a [`Decoder`](crate::Decoder) or the
/// repository's object pipeline).
pub struct ArchiveReader<'a> {
    archive: tar::Archive<Forward<Box<dyn Read + Send + 'a>>>,
}

impl<'a> ArchiveReader<'a> {
    /// Read `reader`.
    pub fn new<R: Read + Send + 'a>(reader: R) -> Self {
        Self {
            archive: tar::Archive::new(Forward {
                reader: Box::new(reader),
                position: 0,
            }),
        }
    }

    /// Visit every entry in order. Names that would escape a target (`..`, absolute) fail with
    /// [`Error::UnsafePath`] before the callback sees them; read errors of the stream itself
    /// fail with [`Error::Corrupt`].
    pub fn for_each<E, F>(&mut self, visit: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(ArchiveEntry<'_>) -> Result<(), E>,
    {
        self.visit(usize::MAX, visit)
    }

    /// Visit the first entry only, as [`Self::for_each`] does; what follows it is not read.
    /// `Ok(false)` when the stream holds no entry.
    pub fn first<E, F>(&mut self, visit: F) -> Result<bool, E>
    where
        E: From<Error>,
        F: FnMut(ArchiveEntry<'_>) -> Result<(), E>,
    {
        let mut seen = false;
        let mut visit = visit;
        self.visit(1, |entry| {
            seen = true;
            visit(entry)
        })?;
        Ok(seen)
    }

    fn visit<E, F>(&mut self, limit: usize, mut visit: F) -> Result<(), E>
    where
        E: From<Error>,
        F: FnMut(ArchiveEntry<'_>) -> Result<(), E>,
    {
        let corrupt = |context: String, source: io::Error| Error::Corrupt { context, source };
        let entries = self
            .archive
            .entries_with_seek()
            .map_err(|e| corrupt("reading the first entry".to_string(), e))?;
        let mut last = String::from("<start of archive>");
        for entry in entries.take(limit) {
            let mut entry = entry.map_err(|e| corrupt(format!("after entry {last:?}"), e))?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8(raw).map_err(|e| Error::UnsafePath {
                path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                reason: "name is not UTF-8",
            })?;
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            let mode = header.mode().unwrap_or(0o644);
            let path = if kind == EntryKind::Dir {
                name.trim_end_matches('/')
            } else {
                name.as_str()
            };
            safe_relative_path(path)?;
            let link = match entry.link_name_bytes() {
                Some(bytes) if kind == EntryKind::Symlink => Some(
                    String::from_utf8(bytes.into_owned()).map_err(|_| Error::UnsafePath {
                        path: path.to_string(),
                        reason: "link target is not UTF-8",
                    })?,
                ),
                _ => None,
            };
            let size = entry.size();
            visit(ArchiveEntry {
                path,
                kind,
                size,
                mode,
                link,
                data: &mut entry,
            })?;
            last = path.to_string();
        }
        Ok(())
    }
}

/// The tar stream, which tar may seek forward. Without a seek, tar reads its way to each
/// header through a 32 KiB buffer it zeroes on every entry, even with nothing to skip: 4 %
/// of a restore's samples for a tree of small files.
struct Forward<R> {
    reader: R,
    /// Bytes read so far: where tar takes the stream to be after a seek.
    position: u64,
}

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Forward<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        // tar only ever seeks ahead from where it is.
        let ahead = match to {
            SeekFrom::Current(n) => u64::try_from(n).ok(),
            SeekFrom::Start(_) | SeekFrom::End(_) => None,
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "a tar stream reads forward"))?;
        if ahead > 0 {
            let skipped = io::copy(&mut self.take(ahead), &mut io::sink())?;
            if skipped < ahead {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArchiveWriter, Compression, Decoder, Encoder, EntryMeta};
    use rstest::rstest;

    const META: EntryMeta = EntryMeta {
        mode: 0o640,
        uid: 33,
        gid: 33,
        mtime_ns: 1_600_000_000_123_456_789,
    };

    /// Path, kind, data and link target of every entry.
    type Entries = Vec<(String, EntryKind, Vec<u8>, Option<String>)>;

    fn collect(bytes: &[u8]) -> Result<Entries, Error> {
        let mut out = Vec::new();
        let decoder = Decoder::new(bytes).map_err(|source| Error::Corrupt {
            context: "the stream header".to_string(),
            source,
        })?;
        ArchiveReader::new(decoder).for_each(|e: ArchiveEntry<'_>| {
            let mut data = Vec::new();
            e.data
                .read_to_end(&mut data)
                .map_err(|source| Error::Corrupt {
                    context: e.path.to_string(),
                    source,
                })?;
            out.push((e.path.to_string(), e.kind, data, e.link));
            Ok::<_, Error>(())
        })?;
        Ok(out)
    }

    #[test]
    fn long_names_and_links_round_trip_through_pax() {
        let long_dir = "d".repeat(150);
        let long_file = format!("{long_dir}/{}", "ü".repeat(120));
        let long_target = "t/".repeat(80);
        let mut w = ArchiveWriter::new(Encoder::new(Vec::new(), Compression::Gzip(1), 0).unwrap());
        w.append_dir(&long_dir, &META).unwrap();
        w.append_file(&long_file, &META, &b"abc"[..], 3).unwrap();
        w.append_symlink("link", &long_target, &META).unwrap();
        let bytes = w.finish().unwrap().finish().unwrap();
        let got = collect(&bytes).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, long_dir);
        assert_eq!(got[0].1, EntryKind::Dir);
        assert_eq!(got[1].0, long_file);
        assert_eq!(got[1].2, b"abc");
        assert_eq!(got[2].3.as_deref(), Some(long_target.as_str()));
    }

    #[test]
    fn owners_go_into_the_headers_and_ids_past_ustar_into_pax() {
        let big = EntryMeta {
            uid: 5_000_000,
            gid: 4_294_967_294,
            ..META
        };
        let mut w = ArchiveWriter::new(Vec::new());
        w.append_file("small", &META, &b"a"[..], 1).unwrap();
        w.append_file("big", &big, &b"b"[..], 1).unwrap();
        let bytes = w.finish().unwrap();
        let mut owners = Vec::new();
        for entry in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut ids = (entry.header().uid().unwrap(), entry.header().gid().unwrap());
            for pax in entry.pax_extensions().unwrap().into_iter().flatten() {
                let pax = pax.unwrap();
                let value = pax.value().unwrap().parse().unwrap();
                match pax.key().unwrap() {
                    "uid" => ids.0 = value,
                    "gid" => ids.1 = value,
                    _ => {}
                }
            }
            owners.push(ids);
        }
        assert_eq!(owners, [(33, 33), (5_000_000, 4_294_967_294)]);
    }

    #[test]
    fn an_entry_reads_alone_from_its_offset() {
        let long = format!("{}f", "x/".repeat(80));
        let mut w = ArchiveWriter::new(Vec::new());
        let a = w.append_file("a", &META, &b"first"[..], 5).unwrap();
        let b = w.append_file(&long, &META, &b"second"[..], 6).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!((a.offset, b.offset), (0, 1024));
        let mut got = Vec::new();
        let found = ArchiveReader::new(&bytes[b.offset as usize..])
            .first(|e: ArchiveEntry<'_>| {
                let mut data = String::new();
                e.data.read_to_string(&mut data).unwrap();
                got.push((e.path.to_string(), data));
                Ok::<_, Error>(())
            })
            .unwrap();
        assert!(found);
        assert_eq!(
            got,
            [(long, "second".to_string())],
            "a PAX-named entry, whole"
        );
    }

    #[test]
    fn a_writer_reading_the_files_itself_makes_the_same_archive() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 / 5 % 251) as u8).collect();
        let files: [(&str, &[u8], u64); 4] = [
            ("small", b"hello", 5),
            ("big", &big, big.len() as u64),
            ("short", b"ab", 5),
            ("empty", b"", 0),
        ];
        let encoder = || Encoder::new(Vec::new(), Compression::Zstd(3), 2).unwrap();
        let mut copied = ArchiveWriter::new(encoder());
        let mut reading = ArchiveWriter::reading_into(encoder());
        for (name, data, size) in files {
            let a = copied.append_file(name, &META, data, size).unwrap();
            let b = reading.append_file(name, &META, data, size).unwrap();
            assert_eq!(a, b, "{name}");
        }
        let copied = copied.finish().unwrap().finish().unwrap();
        let reading = reading.finish().unwrap().finish().unwrap();
        let got = collect(&reading).unwrap();
        assert_eq!(got, collect(&copied).unwrap());
        assert_eq!(got[1].2, big);
        assert_eq!(got[2].2, b"ab\0\0\0");
    }

    #[test]
    fn short_source_is_padded_and_reported() {
        let mut w = ArchiveWriter::new(Vec::new());
        let appended = w.append_file("f", &META, &b"ab"[..], 5).unwrap();
        assert!(appended.truncated);
        assert_eq!(appended.digest.sha256, crate::sha256_hex(b"ab\0\0\0"));
        let bytes = w.finish().unwrap();
        assert_eq!(collect(&bytes).unwrap()[0].2, b"ab\0\0\0");
    }

    #[test]
    fn refuses_entries_that_escape_the_target() {
        for evil in ["../evil", "/etc/evil", "a/../../evil"] {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            header.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`, so write the name bytes the way a hostile archive would.
            let name = &mut header.as_old_mut().name;
            name[..evil.len()].copy_from_slice(evil.as_bytes());
            header.set_cksum();
            builder.append(&header, &b"x"[..]).unwrap();
            let bytes = builder.into_inner().unwrap();
            let err = collect(&bytes).unwrap_err();
            assert!(
                matches!(err, Error::UnsafePath { ref path, .. } if path == evil),
                "{evil}: {err}"
            );
        }
    }

    #[test]
    fn truncated_zstd_stream_is_corrupt() {
        let mut w = ArchiveWriter::new(Encoder::new(Vec::new(), Compression::Zstd(3), 0).unwrap());
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        w.append_file("f", &META, &data[..], data.len() as u64)
            .unwrap();
        let bytes = w.finish().unwrap().finish().unwrap();
        let cut = &bytes[..bytes.len() / 2];
        assert!(collect(cut).is_err());
    }

    /// Paths seen by a `for_each` whose visitor reads `read` bytes of each entry's data.
    fn paths_reading(bytes: &[u8], read: usize) -> Result<Vec<String>, Error> {
        let mut seen = Vec::new();
        ArchiveReader::new(bytes).for_each(|e: ArchiveEntry<'_>| {
            let mut head = vec![0; read.min(e.size as usize)];
            e.data.read_exact(&mut head).unwrap();
            seen.push(e.path.to_string());
            Ok::<_, Error>(())
        })?;
        Ok(seen)
    }

    #[rstest]
    #[case::none(0)]
    #[case::a_byte(1)]
    #[case::part(700)]
    #[case::all(usize::MAX)]
    fn entries_follow_whatever_each_visitor_leaves_unread(#[case] read: usize) {
        let sizes = [0, 1, 511, 512, 513, 70_000, 3];
        let mut w = ArchiveWriter::new(Vec::new());
        let mut paths = Vec::new();
        for (i, size) in sizes.into_iter().enumerate() {
            let path = format!("f{i}");
            w.append_file(&path, &META, &vec![7; size][..], size as u64)
                .unwrap();
            paths.push(path);
        }
        let bytes = w.finish().unwrap();
        assert_eq!(paths_reading(&bytes, read).unwrap(), paths);
    }

    #[test]
    fn a_tar_cut_inside_data_left_unread_is_corrupt() {
        let mut w = ArchiveWriter::new(Vec::new());
        w.append_file("big", &META, &vec![1; 70_000][..], 70_000)
            .unwrap();
        w.append_file("next", &META, &b"x"[..], 1).unwrap();
        let bytes = w.finish().unwrap();
        let err = paths_reading(&bytes[..40_000], 0).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { ref context, .. } if context.contains("big")),
            "{err}"
        );
    }
}
