//! Label and field selectors from `?labelSelector=` / `?fieldSelector=`: parsing with upstream's
//! grammar, validation and error texts (apimachinery `labels.Parse`, `fields.ParseSelector`),
//! and matching against objects.

mod field;
mod label;
mod validation;

pub use field::{FieldRequirement, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement};

/// Result of selector parsing and validation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A selector the API server refuses; every variant is a 400 `BadRequest` whose message is
/// the `Display` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A label selector that does not parse, or names an invalid key or value.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A field selector that does not parse (bad term or escape sequence).
    #[error("{0}")]
    InvalidFieldSelector(String),
    /// A field selector label the kind does not support.
    #[error("{message}")]
    UnsupportedField {
        /// The rejected label.
        field: String,
        /// Upstream's conversion error text.
        message: String,
    },
}

impl Error {
    /// HTTP status the API server answers with (always 400 `BadRequest`).
    pub fn status_code(&self) -> u16 {
        match self {
            Error::InvalidLabelSelector(_)
            | Error::InvalidFieldSelector(_)
            | Error::UnsupportedField { .. } => 400,
        }
    }
}
