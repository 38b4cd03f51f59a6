//! Where events come from.

pub mod cloudtrail;
