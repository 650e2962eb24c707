//! Faults the document store detects itself, as core errors. The backend
//! adds its id and the operation (every trait method tags its errors).

use palisade_core::{Error, ErrorDetail, ErrorKind};

/// Faults the document store detects itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentFault {
    /// The collection does not exist.
    NoCollection,
    /// The collection exists with another spec.
    SpecMismatch,
    /// A document to replace does not exist (or expired).
    NoDocument,
    /// `_id` or a unique index already holds the value.
    Unique(String),
    /// A document's `_version` differs from the expected one.
    Version {
        /// What the caller expected.
        expected: u64,
        /// What is stored.
        actual: u64,
    },
}

impl From<DocumentFault> for Error {
    fn from(f: DocumentFault) -> Self {
        match f {
            DocumentFault::NoCollection => {
                Error::new(ErrorKind::NotFound, "no such collection; call ensure_collection first")
            }
            DocumentFault::SpecMismatch => Error::new(ErrorKind::Conflict, "collection exists with a different spec"),
            DocumentFault::NoDocument => Error::new(ErrorKind::NotFound, "no document with that id"),
            DocumentFault::Unique(index) => {
                Error::new(ErrorKind::Conflict, format!("duplicate value for unique index `{index}`"))
                    .with_detail(ErrorDetail::UniqueViolation { index })
            }
            DocumentFault::Version { expected, actual } => {
                Error::new(ErrorKind::Conflict, "document `_version` changed")
                    .with_detail(ErrorDetail::DocumentVersionConflict { expected, actual })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_have_the_kinds_and_details_of_the_contract() {
        assert_eq!(Error::from(DocumentFault::NoCollection).kind(), ErrorKind::NotFound);
        assert_eq!(Error::from(DocumentFault::NoDocument).kind(), ErrorKind::NotFound);
        assert_eq!(Error::from(DocumentFault::SpecMismatch).kind(), ErrorKind::Conflict);
        let e = Error::from(DocumentFault::Version { expected: 1, actual: 2 });
        assert!(matches!(e.detail(), Some(ErrorDetail::DocumentVersionConflict { expected: 1, actual: 2 })));
        let e = Error::from(DocumentFault::Unique("_id".into()));
        assert!(matches!(e.detail(), Some(ErrorDetail::UniqueViolation { index }) if index == "_id"));
    }
}
