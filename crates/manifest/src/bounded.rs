//! A bound on the strings of JSON read from a repository. serde_json holds a string whole
//! before anyone sees it, so a listing of 73 KB compressed holding one 2 GiB path took 4 GB
//! of memory to be refused, or aborted the process under a memory limit.

use std::io::{self, Read};

/// The longest string a listing may hold, in JSON text: a path or link target is at most
/// 4,096 bytes (Linux's `PATH_MAX`), 24 KiB with every byte a control character escaped as
/// `\u00XX`.
pub(crate) const MAX_STRING: usize = 64 * 1024;

/// Passes JSON text through, failing once a string literal grows past `limit` bytes.
pub(crate) struct BoundedStrings<R> {
    inner: R,
    limit: usize,
    in_string: bool,
    escaped: bool,
    /// Bytes of the string being read so far.
    run: usize,
}

impl<R> BoundedStrings<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        BoundedStrings {
            inner,
            limit,
            in_string: false,
            escaped: false,
            run: 0,
        }
    }

    /// Follow the string literals through `bytes`.
    fn scan(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            if self.escaped {
                self.escaped = false;
                self.run += 1;
                at += 1;
                continue;
            }
            if !self.in_string {
                match memchr::memchr(b'"', &bytes[at..]) {
                    Some(quote) => {
                        self.in_string = true;
                        self.run = 0;
                        at += quote + 1;
                    }
                    None => at = bytes.len(),
                }
                continue;
            }
            let rest = &bytes[at..];
            let stop = memchr::memchr2(b'"', b'\\', rest);
            self.run += stop.unwrap_or(rest.len());
            if self.run > self.limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a string longer than {} KiB", self.limit / 1024),
                ));
            }
            match stop {
                Some(i) if rest[i] == b'\\' => {
                    self.escaped = true;
                    self.run += 1;
                    at += i + 1;
                }
                Some(i) => {
                    self.in_string = false;
                    at += i + 1;
                }
                None => at = bytes.len(),
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for BoundedStrings<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(json: &str, limit: usize, chunk: usize) -> bool {
        let mut bounded = BoundedStrings::new(json.as_bytes(), limit);
        let mut buf = vec![0; chunk];
        loop {
            match bounded.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn strings_longer_than_the_limit_fail_wherever_the_reads_cut_them() {
        // (JSON, limit, passes)
        let cases = [
            (r#"{"path":"abcd"}"#, 4, true),
            (r#"{"path":"abcde"}"#, 4, false),
            (r#"{"a":"abcd","b":"abcd"}"#, 4, true),
            // An escaped quote does not end the string; its two bytes count.
            (r#"{"p":"a\"bc"}"#, 4, false),
            (r#"{"p":"a\"b"}"#, 4, true),
            (r#"{"p":"ab\\"}"#, 4, true),
            (r#"{"p":"ab\\","q":"abcd"}"#, 4, true),
            // Long text outside strings is no string.
            (r#"[1111111111111111111111]"#, 4, true),
        ];
        for (json, limit, expected) in cases {
            for chunk in [1, 2, 3, 64] {
                assert_eq!(passes(json, limit, chunk), expected, "{json} by {chunk}");
            }
        }
    }
}
