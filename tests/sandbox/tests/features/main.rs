//! The sandbox's AWS-side features, tested through the real aws-sdk-rust clients over HTTP.
//! One test binary: each module covers one feature.

mod accounts;
mod common;
mod eventbridge;
mod faults;
mod orgtrail;
mod services;
mod sns;
