use std::io::{self, Read, Write};

use crate::hashing::ExactReader;
use crate::{Digest, Error};

/// The metadata a tar header carries for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Owner's numeric user id.
    pub uid: u32,
    /// Owner's numeric group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// What [`ArchiveWriter::append_file`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Size and SHA-256 of the bytes stored for the entry.
    pub digest: Digest,
    /// The source ended before the announced size; the rest was stored as zeros.
    pub truncated: bool,
    /// Where the entry starts in the tar stream (its first header, a PAX one if any).
    pub offset: u64,
}

/// A writer that reads the bytes it is given into buffers of its own: what
/// [`ArchiveWriter::reading_into`] hands a file's content to, instead of copying the content
/// through a buffer of the archive's.
pub trait ReadInto: Write {
    /// Read `reader` to its end into this writer; returns the bytes read.
    fn read_into(&mut self, reader: &mut dyn Read) -> io::Result<u64>;
}

/// Writes a tar stream, entry by entry, into a writer that compresses (an [`Encoder`] or
/// the repository's object pipeline) or not.
///
/// Entries are ustar headers; a PAX extended header is added only where ustar cannot hold
/// the value: names or link targets too long, sizes of 8 GiB and more.
///
/// [`Encoder`]: crate::Encoder
pub struct ArchiveWriter<W: Write> {
    builder: tar::Builder<Counted<W>>,
    content: Content<W>,
}

/// How a file's content reaches the writer.
enum Content<W> {
    /// Read into this buffer, then written.
    Copied(Vec<u8>),
    /// Read by the writer itself ([`ReadInto::read_into`]).
    ReadInto(fn(&mut W, &mut dyn Read) -> io::Result<u64>),
}

/// A writer that counts what passes, so entries know where they start.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const BLOCK: u64 = 512;
const USTAR_MAX_SIZE: u64 = 0o77777777777;
/// The largest id a ustar header holds (seven octal digits).
const USTAR_MAX_ID: u64 = 0o7777777;
const COPY_BUFFER: usize = 1024 * 1024;

impl<W: Write> ArchiveWriter<W> {
    /// Start an archive into `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            builder: tar::Builder::new(Counted { inner, written: 0 }),
            content: Content::Copied(vec![0; COPY_BUFFER]),
        }
    }

    /// Add a directory entry.
    pub fn append_dir(&mut self, path: &str, meta: &EntryMeta) -> Result<(), Error> {
        let name = format!("{path}/");
        self.header(&name, tar::EntryType::Directory, meta, 0, None)
            .map_err(|source| write_error(path, source))
    }

    /// Add a symbolic link entry pointing at `target` (not followed).
    pub fn append_symlink(
        &mut self,
        path: &str,
        target: &str,
        meta: &EntryMeta,
    ) -> Result<(), Error> {
        self.header(path, tar::EntryType::Symlink, meta, 0, Some(target))
            .map_err(|source| write_error(path, source))
    }

    /// Add a regular file of `size` bytes read from `data`, hashing the bytes stored.
    pub fn append_file<R: Read>(
        &mut self,
        path: &str,
        meta: &EntryMeta,
        data: R,
        size: u64,
    ) -> Result<Appended, Error> {
        self.append_file_inner(path, meta, data, size)
            .map_err(|source| write_error(path, source))
    }

    fn append_file_inner<R: Read>(
        &mut self,
        path: &str,
        meta: &EntryMeta,
        data: R,
        size: u64,
    ) -> io::Result<Appended> {
        let offset = self.builder.get_ref().written;
        self.header(path, tar::EntryType::Regular, meta, size, None)?;
        let mut source = ExactReader::new(data, size);
        let out = self.builder.get_mut();
        match &mut self.content {
            Content::Copied(buffer) => loop {
                let n = source.read(buffer)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buffer[..n])?;
            },
            Content::ReadInto(read_into) => out.written += read_into(&mut out.inner, &mut source)?,
        }
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        out.write_all(&[0u8; BLOCK as usize][..padding as usize])?;
        let truncated = source.short;
        Ok(Appended {
            digest: source.finish(size),
            truncated,
            offset,
        })
    }

    fn header(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        meta: &EntryMeta,
        size: u64,
        link: Option<&str>,
    ) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(meta.mode & 0o7777);
        header.set_mtime(meta.mtime_ns.max(0) as u64 / 1_000_000_000);
        header.set_size(size);
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        // Ids past ustar's seven octal digits go in PAX records, which GNU tar reads.
        for (key, id) in [("uid", meta.uid), ("gid", meta.gid)] {
            if u64::from(id) > USTAR_MAX_ID {
                pax.push((key, id.to_string().into_bytes()));
            }
        }
        header.set_uid(u64::from(meta.uid).min(USTAR_MAX_ID));
        header.set_gid(u64::from(meta.gid).min(USTAR_MAX_ID));
        if header.set_path(path).is_err() {
            pax.push(("path", path.as_bytes().to_vec()));
            set_truncated(&mut header.as_old_mut().name, path);
        }
        if let Some(target) = link {
            if header.set_link_name(target).is_err() {
                pax.push(("linkpath", target.as_bytes().to_vec()));
                set_truncated(&mut header.as_old_mut().linkname, target);
            }
        }
        if size > USTAR_MAX_SIZE {
            pax.push(("size", size.to_string().into_bytes()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))?;
        }
        header.set_cksum();
        self.builder.get_mut().write_all(header.as_bytes())
    }

    /// Write the end-of-archive marker; returns the inner writer (still to be finished if
    /// it compresses).
    pub fn finish(self) -> Result<W, Error> {
        self.builder
            .into_inner()
            .map(|counted| counted.inner)
            .map_err(|source| Error::Finish { source })
    }
}

impl<W: ReadInto> ArchiveWriter<W> {
    /// Start an archive into `inner`, which reads each file's content itself: one copy of
    /// every byte fewer than [`ArchiveWriter::new`] makes.
    pub fn reading_into(inner: W) -> Self {
        Self {
            builder: tar::Builder::new(Counted { inner, written: 0 }),
            content: Content::ReadInto(W::read_into),
        }
    }
}

fn set_truncated(field: &mut [u8], value: &str) {
    // Readers take the PAX record; the header keeps a recognisable prefix of the name.
    let bytes = value.as_bytes();
    let n = bytes.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&bytes[..n]);
}

fn write_error(path: &str, source: io::Error) -> Error {
    Error::Write {
        path: path.to_string(),
        source,
    }
}
