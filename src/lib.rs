//! # trailguard
//!
//! A daemon that guards AWS KMS keys and IAM access keys: it reads CloudTrail event history,
//! matches the calls that mean a key is in danger, rescues keys scheduled for deletion that are
//! still in use, and notifies through SNS with the whole story.
//!
//! # Layout
//!
//! Data flows one way, with state and telemetry beside it:
//!
//! ```text
//! sources ──▶ event ──▶ rules ──▶ job ──▶ plan ──▶ aggregate ──▶ actions ──▶ outbox ──▶ notify
//! (LookupEvents  (typed    (patterns   (finding   (protection  (windows)   (KMS rescue,  (persisted,
//!  slices,       record)    compiled)   + work)    policy)                  IAM sweep)    own sender)
//!  cursor)
//!                       state (redb): cursors, seen ids, jobs, outbox, windows
//!                       telemetry: logs, metrics, /metrics /healthz /readyz
//! ```
//!
//! The pure core does no I/O and takes `now` as an argument, so it is tested in milliseconds
//! (`tests/purity.rs` checks that it imports no tokio, AWS SDK, metrics, state store or
//! `std::fs`): [`event`], [`cursor`], [`rules`], [`plan`], [`job`], [`aggregate`], [`outbox`],
//! [`notify::message`], [`protection`], [`arn`], [`glob`], [`validate`].
//!
//! Around it:
//! - [`sources`]: where events come from, behind [`sources::LookupApi`];
//! - [`actions`]: remediation, behind [`actions::Remediator`] and [`actions::KeyApi`];
//! - [`iam`]: stale access keys: the pure policy and plan, and the sweep behind [`iam::IamApi`];
//! - [`notify`]: rendering (pure) and the [`notify::Notifier`] seam;
//! - [`aws`]: the one AWS layer: clients with timeouts, the retry policy, the shared
//!   `LookupEvents` rate limiter, error classification, and the adapters for the seams above;
//! - [`clock`]: AWS time, estimated from AWS's responses;
//! - [`lease`]: one writer per account, across hosts;
//! - [`state`]: the redb store and the exactly-once protocol;
//! - [`telemetry`]: logs, metric names and labels, the health endpoints;
//! - [`config`]: the document and environment, assembled from each domain's validated section;
//! - [`pipeline`]: the daemon's tasks (pollers, worker, sender, IAM sweep loop), the only module
//!   that knows all of the above;
//! - [`scan`]: `trailguard scan` over recorded events, streaming, no AWS calls;
//! - [`cli`]: the command line.

pub mod accounts;
pub mod actions;
pub mod aggregate;
pub mod arn;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod event;
pub mod glob;
pub mod iam;
pub mod job;
pub mod lease;
pub mod notify;
pub mod outbox;
pub mod pipeline;
pub mod plan;
pub mod protection;
pub mod rules;
pub mod scan;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod validate;
