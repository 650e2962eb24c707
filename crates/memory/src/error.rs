//! The one place memory-backend faults become `palisade_core::Error`s.

use palisade_core::{Error, ErrorDetail, ErrorKind};

use crate::BACKEND;

/// Faults the memory backend itself detects (input validation errors come
/// from core already typed).
#[derive(Debug)]
pub(crate) enum Fault {
    /// A key holds another type than the operation needs.
    WrongType(&'static str),
    /// A counter would overflow `i64`.
    Overflow,
    /// The collection does not exist.
    NoCollection,
    /// The collection exists with another spec.
    SpecMismatch,
    /// A document to replace does not exist.
    NoDocument,
    /// A unique index already holds the value.
    Unique(String),
    /// A document's `_version` differs from the expected one.
    DocVersion { expected: u64, actual: u64 },
    /// A score would leave ±(2^53 − 1).
    ScoreRange,
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        let e = match f {
            Fault::WrongType(want) => Error::new(ErrorKind::Conflict, format!("key holds another type than {want}")),
            Fault::Overflow => Error::new(ErrorKind::Conflict, "counter would overflow a 64-bit integer"),
            Fault::NoCollection => Error::new(ErrorKind::NotFound, "no such collection; call ensure_collection first"),
            Fault::SpecMismatch => Error::new(ErrorKind::Conflict, "collection exists with a different spec"),
            Fault::NoDocument => Error::new(ErrorKind::NotFound, "no document with that id"),
            Fault::Unique(index) => {
                Error::new(ErrorKind::Conflict, format!("duplicate value for unique index `{index}`"))
                    .with_detail(ErrorDetail::UniqueViolation { index })
            }
            Fault::DocVersion { expected, actual } => Error::new(ErrorKind::Conflict, "document `_version` changed")
                .with_detail(ErrorDetail::DocumentVersionConflict { expected, actual }),
            Fault::ScoreRange => Error::invalid("score would leave ±(2^53 - 1)"),
        };
        e.with_backend(BACKEND)
    }
}

/// Tags an error from any layer with this backend and `op`.
pub(crate) fn tagged(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_op(op)
}
