//! End-to-end tests of the `strongbox` binary live in `e2e/`; this library is empty.
