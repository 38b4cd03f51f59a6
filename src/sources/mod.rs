//! Where events come from. Today: CloudTrail event history through `LookupEvents`
//! ([`cloudtrail`]), behind the [`LookupApi`] seam; the AWS implementation is in
//! [`crate::aws::cloudtrail`].

pub mod cloudtrail;
pub mod config;
pub mod usage;

pub use cloudtrail::{
    LookedUp, LookupApi, LookupKey, LookupPage, LookupQuery, SliceRead, find_latest, read_slice,
};
