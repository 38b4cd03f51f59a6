//! Remediation against AWS.

pub mod kms;
