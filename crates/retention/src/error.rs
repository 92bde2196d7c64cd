/// Errors of the retention crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No rule is set (or every count is 0): such a policy would keep nothing,
    /// so it is refused rather than treated as "forget everything".
    #[error("a policy that would keep nothing is refused: set at least one --keep-* rule")]
    EmptyPolicy,
    /// A timezone that is neither `UTC`, a fixed offset such as `+02:00`, nor an IANA name.
    #[error("invalid timezone {name:?}: expected UTC, an offset such as +02:00, or an IANA name such as Europe/Berlin")]
    InvalidTimezone {
        /// What the user wrote.
        name: String,
    },
    /// A `within` duration that could not be parsed.
    #[error("invalid duration {text:?}: {reason}")]
    InvalidDuration {
        /// What the user wrote.
        text: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two candidates share an id; a plan for them would be ambiguous.
    #[error("snapshot id {id:?} appears more than once")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
}
