//! Tar streams in and out of strongbox snapshots.
//!
//! A files snapshot stores its new and changed entries as one tar stream, compressed with
//! zstd (multithreaded), gzip or nothing. Standard tools read it: `zstd -dc x.tar.zst | tar x`.
//! This crate writes such streams ([`ArchiveWriter`]), reads them back ([`ArchiveReader`]),
//! detects the codec of a stream by its magic bytes ([`Codec::detect`]) and refuses entry
//! names that would escape a restore target ([`safe_relative_path`]).
//!
//! ```
//! use strongbox_archive::{ArchiveReader, ArchiveWriter, Compression, EntryKind, EntryMeta};
//!
//! let mut writer = ArchiveWriter::new(Vec::new(), Compression::Zstd(3), 1)?;
//! let meta = EntryMeta { mode: 0o644, mtime_ns: 1_700_000_000_000_000_000 };
//! let appended = writer.append_file("docs/hello.txt", &meta, &b"hello"[..], 5)?;
//! assert_eq!(appended.digest.size, 5);
//! let bytes = writer.finish()?;
//!
//! let mut reader = ArchiveReader::new(&bytes[..])?;
//! let mut names = Vec::new();
//! reader.for_each(|entry| {
//!     assert_eq!(entry.kind, EntryKind::File);
//!     names.push(entry.path.to_string());
//!     Ok(())
//! })?;
//! assert_eq!(names, ["docs/hello.txt"]);
//! # Ok::<(), strongbox_archive::Error>(())
//! ```

mod ahead;
mod codec;
mod error;
mod hashing;
mod path;
mod read;
mod write;

pub use codec::{Codec, Compression, Decoder, Encoder};
pub use error::Error;
pub use hashing::{sha256_hex, Digest, HashingReader};
pub use path::safe_relative_path;
pub use read::{ArchiveEntry, ArchiveReader, EntryKind};
pub use write::{Appended, ArchiveWriter, EntryMeta};
