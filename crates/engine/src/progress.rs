use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::Error;

/// Progress of long work. The engine calls it; the default does nothing, and a CLI draws it.
pub trait Progress: Send + Sync {
    /// A new phase starts (`scanning`, `backing up`, `restoring`, `verifying`), with the
    /// bytes it will process when known.
    fn phase(&self, _name: &str, _total_bytes: Option<u64>) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A cancellation flag, shared with a signal handler; checked between chunks of work.
#[derive(Debug, Default, Clone)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask running work to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `err`, unless stopping was asked for: then the failure is the interruption itself
    /// (a stream cut short by cancel reports whatever error it hit).
    pub(crate) fn or_cancelled(&self, err: impl Into<Error>) -> Error {
        if self.is_cancelled() {
            Error::Cancelled
        } else {
            err.into()
        }
    }

    /// `Err(Cancelled)` once stopping was asked for.
    pub fn check(&self) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Wraps a reader: reports progress, stops on cancel, and keeps (instead of returning) a
/// read error, ending the stream there, so that the caller can finish a tar entry cleanly.
pub(crate) struct Tracked<'a, R> {
    pub(crate) inner: R,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) cancel: &'a Cancel,
    pub(crate) error: Option<io::Error>,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        if self.error.is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.progress.advance(n as u64);
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e);
                Ok(0)
            }
        }
    }
}

/// Wraps a reader or a writer: reports progress and fails at once on cancel.
pub(crate) struct Watched<'a, T> {
    pub(crate) inner: T,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) cancel: &'a Cancel,
}

impl<T> Watched<'_, T> {
    fn count(&self, n: usize) -> io::Result<usize> {
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn stop_if_cancelled(&self) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            Err(io::Error::other("cancelled"))
        } else {
            Ok(())
        }
    }
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stop_if_cancelled()?;
        let n = self.inner.read(buf)?;
        self.count(n)
    }
}

impl<W: Write> Write for Watched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stop_if_cancelled()?;
        let n = self.inner.write(buf)?;
        self.count(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
