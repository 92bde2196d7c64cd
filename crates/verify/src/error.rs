/// Errors of the verify crate: a files listing that is not a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An entry of a listing that a restore must not write.
    #[error("listing of snapshot {snapshot}, entry {path:?}: {reason}")]
    Tree {
        /// The snapshot whose listing it is.
        snapshot: String,
        /// The entry.
        path: String,
        /// What is wrong.
        reason: String,
    },
}
