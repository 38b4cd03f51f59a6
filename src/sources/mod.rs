//! Where events come from, behind seams whose AWS implementations are in [`crate::aws`]:
//! - CloudTrail event history through `LookupEvents` ([`cloudtrail`], [`LookupApi`]);
//! - SQS queues fed by EventBridge or by S3 notifications of an organization trail's log
//!   files ([`queue`], [`QueueApi`], [`ObjectApi`]; what a message carries is [`envelope`]).

pub mod cloudtrail;
pub mod config;
pub mod envelope;
pub mod queue;

pub use cloudtrail::{
    LookedUp, LookupApi, LookupKey, LookupPage, LookupQuery, SliceRead, find_latest, read_slice,
};
pub use queue::{ObjectApi, QueueApi, QueueInfo, QueueMessage};
