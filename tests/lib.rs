//! Herald end-to-end tests live in this crate's `[[test]]` targets.
