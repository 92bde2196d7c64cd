//! Tar streams in and out of strongbox snapshots.
//!
//! A files snapshot stores its new and changed entries as one tar stream, compressed with
//! zstd (independent frames compressed on every core), gzip or nothing. Standard tools read
//! it: `zstd -dc x.tar.zst | tar x`.
//! This crate writes tar streams ([`ArchiveWriter`]) and reads them back
//! ([`ArchiveReader`]); it holds the codecs ([`Encoder`], [`Decoder`], which detects a
//! stream's codec by its magic bytes) that the repository's object pipeline applies to every
//! object; and it refuses entry names that would escape a restore target
//! ([`safe_relative_path`]). Compression is not the archive's business: the writer writes
//! plain tar into whatever compresses it.
//!
//! ```
//! use strongbox_archive::{
//!     ArchiveReader, ArchiveWriter, Compression, Decoder, Encoder, EntryKind, EntryMeta,
//! };
//!
//! let mut writer = ArchiveWriter::new(Encoder::new(Vec::new(), Compression::Zstd(3), 1)?);
//! let meta = EntryMeta { mode: 0o644, uid: 33, gid: 33, mtime_ns: 1_700_000_000_000_000_000 };
//! let appended = writer.append_file("docs/hello.txt", &meta, &b"hello"[..], 5)?;
//! assert_eq!(appended.digest.size, 5);
//! let bytes = writer.finish()?.finish()?;
//!
//! let mut reader = ArchiveReader::new(Decoder::new(&bytes[..])?);
//! let mut names = Vec::new();
//! reader.for_each(|entry| {
//!     assert_eq!(entry.kind, EntryKind::File);
//!     names.push(entry.path.to_string());
//!     Ok::<(), strongbox_archive::Error>(())
//! })?;
//! assert_eq!(names, ["docs/hello.txt"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod cursor;
mod error;
mod frame_decoder;
mod frames;
mod hashing;
mod overlap;
mod path;
mod read;
mod seek;
mod write;

pub use codec::{Codec, Compression, Decoder, Encoder, DECODE_BUFFER};
pub use cursor::EntryCursor;
pub use error::Error;
pub use hashing::{sha256_hex, Digest, HashingReader};
pub use overlap::{read_full, ReadAhead, WriteBehind};
pub use path::safe_relative_path;
pub use read::{ArchiveEntry, ArchiveReader, EntryKind};
pub use seek::{FrameSpan, SeekTable};
pub use write::{Appended, ArchiveWriter, EntryMeta, ReadInto};
