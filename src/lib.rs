//! # trailguard
//!
//! A daemon that guards AWS KMS keys: it polls CloudTrail event history, matches the calls that
//! mean a key is in danger, rescues keys scheduled for deletion that are still in use, and
//! notifies through SNS with the whole story.
//!
//! # Layout
//!
//! Data flows one way: **source → event → rules → job → remediation / notification**, with
//! state and telemetry beside it.
//!
//! - [`event`]: a typed view of one CloudTrail record. Pure.
//! - [`rules`]: the built-in rules and the key a finding names. Pure.
//! - [`cursor`]: which time windows to read, and de-duplication; the polling strategy and its
//!   API cost are documented there. Pure.
//! - [`notify`]: what a notification says (pure); [`notify::sns`] sends it.
//! - [`config`]: raw TOML + environment → validated [`config::Config`].
//! - [`sources::cloudtrail`]: `LookupEvents` paging, pacing and backoff.
//! - [`actions::kms`]: the rescue (`DescribeKey`, `CancelKeyDeletion`, verify, optional `EnableKey`).
//! - [`state`]: the redb store and the exactly-once protocol.
//! - [`telemetry`]: logs, metric names, `/metrics`, `/healthz`, `/readyz`.
//! - [`iam`]: stale IAM access keys: rules, exemptions, plan (pure); [`iam::sweep`] runs it.
//! - [`plan`]: the KMS protection policy: finding + key facts → actions, with the policy line. Pure.
//! - [`scan`]: `trailguard scan` over recorded events, streaming, no AWS calls.
//! - [`pipeline`]: the only module that knows all of the above.

pub mod actions;
pub mod config;
pub mod cursor;
pub mod event;
pub mod iam;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod rules;
pub mod scan;
pub mod sources;
pub mod state;
pub mod telemetry;
