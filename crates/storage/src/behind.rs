//! Storing an encrypted object's sealed batches on a thread of their own.

use std::io::{self, Write};

use strongbox_archive::WriteBehind;

use crate::payload::Batches;

/// Batches queued for the store thread: with the one it stores and the one being sealed,
/// about ten buffers of 512 KiB circulate. With batches of 256 KiB, two queued measured no
/// faster than none; eight, 3 % faster.
const QUEUED: usize = 8;

/// Stores sealed batches into the store writer (which hashes and writes them) behind the
/// sealer, on a [`WriteBehind`] thread, so that sealing the next batch overlaps with storing
/// this one: an encrypted backup of the media tree ran 3 % faster than with both on one
/// thread. An object of one batch is stored in place, without a thread.
pub(crate) struct StoreBehind<W> {
    /// The store writer, until a batch that is not the last hands it to the thread.
    here: Option<W>,
    thread: Option<WriteBehind<W>>,
}

impl<W: Write + Send + 'static> StoreBehind<W> {
    pub(crate) fn new(stored: W) -> Self {
        Self {
            here: Some(stored),
            thread: None,
        }
    }

    /// Wait until every batch is stored and hand back the store writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        match (self.here.take(), self.thread.take()) {
            (Some(stored), _) => Ok(stored),
            (None, Some(thread)) => thread.finish(),
            (None, None) => Err(not_started()),
        }
    }
}

impl<W: Write + Send + 'static> Batches for StoreBehind<W> {
    fn put(&mut self, batch: Box<[u8]>, len: usize, last: bool) -> io::Result<Box<[u8]>> {
        if let (Some(stored), true) = (&mut self.here, last) {
            return stored.put(batch, len, last);
        }
        if let Some(stored) = self.here.take() {
            self.thread = Some(WriteBehind::with_queue(stored, QUEUED)?);
        }
        match &mut self.thread {
            Some(thread) => thread.put(batch, len),
            None => Err(not_started()),
        }
    }
}

/// The thread failed to start at a batch before (that error was returned then).
fn not_started() -> io::Error {
    io::Error::other("the store thread did not start")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Puts `batches` batches of `len` bytes, each filled with its number, the last flagged.
    fn put_numbered<W: Write + Send + 'static>(
        behind: &mut StoreBehind<W>,
        batches: u8,
        len: usize,
    ) -> io::Result<()> {
        let mut buffer = vec![0; len + 3].into_boxed_slice();
        for n in 0..batches {
            buffer[..len].fill(n);
            let last = n + 1 == batches;
            buffer = behind.put(buffer, len, last)?;
            assert!(
                last || buffer.len() == len + 3,
                "a buffer as long as the one put"
            );
        }
        Ok(())
    }

    #[test]
    fn every_batch_arrives_in_order_with_a_thread_or_without() {
        for batches in [1, 2, 40] {
            let mut behind = StoreBehind::new(Vec::new());
            put_numbered(&mut behind, batches, 1000).unwrap();
            let threaded = behind.thread.is_some();
            assert_eq!(threaded, batches > 1, "{batches} batches");
            let stored = behind.finish().unwrap();
            let expected: Vec<u8> = (0..batches).flat_map(|n| [n; 1000]).collect();
            assert!(stored == expected, "{batches} batches");
        }
    }

    /// Fails every write; says when it is dropped.
    struct Full(Arc<AtomicBool>);

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Full {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_store_threads_error_is_returned_not_hung_on() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut behind = StoreBehind::new(Full(dropped.clone()));
        let err = put_numbered(&mut behind, 2 * QUEUED as u8 + 4, 10).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(dropped.load(Ordering::SeqCst));
        assert!(behind.finish().is_err());
    }

    #[test]
    fn dropped_unfinished_it_drops_the_writer_before_returning() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut behind = StoreBehind::new(Full(dropped.clone()));
        let mut buffer = vec![0; 10].into_boxed_slice();
        buffer = behind.put(buffer, 0, false).unwrap();
        drop(buffer);
        drop(behind);
        assert!(dropped.load(Ordering::SeqCst));
    }
}
