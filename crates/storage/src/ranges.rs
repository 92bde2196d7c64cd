//! Ranges of an object's compressed stream, for a restore that needs a few frames of an
//! archive: a plain object's stream is its stored bytes; a sealed one's is its opened age
//! payload, of which only the 64 KiB chunks around a range are fetched and opened.

use std::io::Read;
use std::ops::Range;

use crate::payload::ChunkLayout;
use crate::repo::RepoReader;
use crate::Error;

/// The stored bytes that hold a sealed object's header, read first to learn where its
/// chunks are; a header of one recipient takes about 200.
const HEAD: u64 = 4096;

/// An object's compressed stream, read by ranges ([`RepoReader::compressed_ranges`]).
/// Nothing read here is checked against the object's record: the caller checks what it
/// decodes (a restore, each file's SHA-256); a sealed object's chunks are authenticated.
#[derive(Debug)]
pub struct CompressedRanges<'r> {
    repo: &'r RepoReader,
    key: String,
    sealed: Option<ChunkLayout>,
    len: u64,
}

impl<'r> CompressedRanges<'r> {
    /// The compressed stream of `key`, `stored_len` bytes as stored; `None` for a sealed
    /// object whose header does not end in its first [`HEAD`] bytes (read it whole).
    pub(crate) fn new(
        repo: &'r RepoReader,
        key: &str,
        stored_len: u64,
    ) -> Result<Option<Self>, Error> {
        let sealed = if repo.sealed() {
            let head = repo.read_stored_range(key, 0..stored_len.min(HEAD))?;
            let layout = repo
                .envelope()
                .chunks(&head, stored_len)
                .map_err(Error::stream("opening", key))?;
            let Some(layout) = layout else {
                return Ok(None);
            };
            Some(layout)
        } else {
            None
        };
        let len = sealed.as_ref().map_or(stored_len, ChunkLayout::plain_len);
        Ok(Some(Self {
            repo,
            key: key.to_string(),
            sealed,
            len,
        }))
    }

    /// The compressed stream's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the compressed stream is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes `range` of the compressed stream, whole.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        self.open(range)?
            .read_to_end(&mut bytes)
            .map_err(Error::stream("reading", &self.key))?;
        Ok(bytes)
    }

    /// The bytes `range` of the compressed stream, streamed: a remote range comes in parts,
    /// several in flight.
    pub fn open(&self, range: Range<u64>) -> Result<Box<dyn Read + Send + 'r>, Error> {
        let Some(layout) = &self.sealed else {
            return self.repo.open_stored_range(&self.key, range);
        };
        let stored = self
            .repo
            .open_stored_range(&self.key, layout.stored_range(&range))?;
        let opened = layout
            .open(stored, &range)
            .map_err(Error::stream("opening", &self.key))?;
        Ok(Box::new(opened))
    }
}
