//! Faults the document store detects itself: core's, shared with every
//! document store.

pub use palisade_core::backend::documents::DocumentFault;
