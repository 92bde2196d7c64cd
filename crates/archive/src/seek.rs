//! The frame index at the end of a stream of independent frames: zstd's seekable format
//! (contrib/seekable_format in the zstd sources), without per-frame checksums (each frame
//! carries its own). It is a skippable frame, which every zstd decoder passes over, so the
//! stream stays one valid zstd stream; a reader that has it can fetch and decode only the
//! frames that hold a range of the content.

use std::ops::Range;

/// First bytes of a skippable frame whose content is a seek table.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Last bytes of the table.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// Compressed and decompressed size of one frame, in stream order.
pub(crate) type FrameSizes = (u32, u32);

/// The skippable frame holding the index of `frames`.
pub(crate) fn encode(frames: &[FrameSizes]) -> Vec<u8> {
    let content = frames.len() * 8 + SeekTable::FOOTER;
    let mut out = Vec::with_capacity(8 + content);
    out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(content as u32).to_le_bytes());
    for (compressed, decompressed) in frames {
        out.extend_from_slice(&compressed.to_le_bytes());
        out.extend_from_slice(&decompressed.to_le_bytes());
    }
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    out
}

/// Where each frame of a stream starts, compressed and decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekTable {
    /// Start of each frame and the end of the last, in stored bytes.
    compressed: Vec<u64>,
    /// The same in content bytes.
    decompressed: Vec<u64>,
}

/// The frames that hold a range of a stream's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    /// Their stored bytes: decode these to get the content from `start` on.
    pub stored: Range<u64>,
    /// Content offset of the first byte they decode to.
    pub start: u64,
}

impl SeekTable {
    /// Bytes at the very end of a stream that say whether it has a table, and how long.
    pub const FOOTER: usize = 9;

    /// The length of the whole table (its skippable frame) from the stream's last
    /// [`Self::FOOTER`] bytes, or `None` when the stream has no table.
    pub fn length(footer: &[u8]) -> Option<u64> {
        let footer: &[u8; Self::FOOTER] = footer.try_into().ok()?;
        let frames = u32::from_le_bytes(footer[..4].try_into().ok()?);
        let magic = u32::from_le_bytes(footer[5..].try_into().ok()?);
        (magic == SEEKABLE_MAGIC && footer[4] == 0)
            .then(|| 8 + 8 * u64::from(frames) + Self::FOOTER as u64)
    }

    /// Read a table: `table` is its whole skippable frame, `stream_len` the length of the
    /// stream it ends. `None` when the bytes are not a table of such a stream.
    pub fn parse(table: &[u8], stream_len: u64) -> Option<Self> {
        let len = Self::length(table.get(table.len().checked_sub(Self::FOOTER)?..)?)?;
        let header = table.get(..8)?;
        if len != table.len() as u64
            || u32::from_le_bytes(header[..4].try_into().ok()?) != SKIPPABLE_MAGIC
            || u64::from(u32::from_le_bytes(header[4..].try_into().ok()?)) != len - 8
        {
            return None;
        }
        let entries = &table[8..table.len() - Self::FOOTER];
        let mut compressed = vec![0];
        let mut decompressed = vec![0];
        for entry in entries.chunks_exact(8) {
            let c = u32::from_le_bytes(entry[..4].try_into().ok()?);
            let d = u32::from_le_bytes(entry[4..].try_into().ok()?);
            compressed.push(compressed.last()? + u64::from(c));
            decompressed.push(decompressed.last()? + u64::from(d));
        }
        // The frames and the table are the whole stream: anything else is not this table.
        (compressed.last()? + len == stream_len).then_some(Self {
            compressed,
            decompressed,
        })
    }

    /// Bytes of content the stream holds.
    pub fn content_len(&self) -> u64 {
        self.decompressed.last().copied().unwrap_or(0)
    }

    /// The frames holding the content bytes `range`, or `None` if it runs past the end.
    pub fn span(&self, range: Range<u64>) -> Option<FrameSpan> {
        if range.end > self.content_len() || range.start >= range.end {
            return None;
        }
        // The last frame starting at or before range.start, and the first ending at or
        // after range.end (empty frames are passed over).
        let first = self.decompressed.partition_point(|&d| d <= range.start) - 1;
        let last = self.decompressed.partition_point(|&d| d < range.end);
        Some(FrameSpan {
            stored: self.compressed[first]..self.compressed[last],
            start: self.decompressed[first],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn table(frames: &[FrameSizes]) -> (SeekTable, u64) {
        let bytes = encode(frames);
        let stored: u64 = frames.iter().map(|f| u64::from(f.0)).sum();
        let stream_len = stored + bytes.len() as u64;
        let footer = &bytes[bytes.len() - SeekTable::FOOTER..];
        assert_eq!(SeekTable::length(footer), Some(bytes.len() as u64));
        (SeekTable::parse(&bytes, stream_len).unwrap(), stream_len)
    }

    // Frames: 100 stored bytes for 1000 of content, 50 for 0, 200 for 500, 10 for 10.
    #[rstest]
    #[case::inside_the_first(0..10, Some((0..100, 0)))]
    #[case::the_whole_first(0..1000, Some((0..100, 0)))]
    #[case::across_an_empty_frame(999..1001, Some((0..350, 0)))]
    #[case::starting_at_a_boundary(1000..1500, Some((150..350, 1000)))]
    #[case::the_last_byte(1509..1510, Some((350..360, 1500)))]
    #[case::past_the_end(1500..1511, None)]
    #[case::empty(5..5, None)]
    fn spans_cover_exactly_the_frames_of_a_range(
        #[case] range: Range<u64>,
        #[case] expected: Option<(Range<u64>, u64)>,
    ) {
        let (table, _) = table(&[(100, 1000), (50, 0), (200, 500), (10, 10)]);
        assert_eq!(table.content_len(), 1510);
        let got = table.span(range).map(|s| (s.stored, s.start));
        assert_eq!(got, expected);
    }

    #[test]
    fn bytes_that_are_not_a_table_of_this_stream_are_refused() {
        let (_, stream_len) = table(&[(100, 1000)]);
        let bytes = encode(&[(100, 1000)]);
        assert!(SeekTable::parse(&bytes, stream_len + 1).is_none());
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(SeekTable::parse(&bad, stream_len).is_none());
        assert_eq!(SeekTable::length(&[0u8; SeekTable::FOOTER]), None);
        assert_eq!(SeekTable::length(&[0u8; 3]), None);
    }
}
