//! `trailguard keys audit`: every customer-managed key of the regions, checked (see
//! [`crate::audit`]). Findings go to stdout, a table on a terminal and JSON lines otherwise;
//! progress and the summary go to stderr.
//!
//! Exit status: 0 no finding at or above `--fail-on`; 1 some; 2 the audit is incomplete (an AWS
//! call failed: what could be read is reported, the failures as `kms_key_unreadable`); 64 bad
//! usage or configuration.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use super::EXIT_CONFIG;
use crate::audit::inventory::{self, Settings};
use crate::audit::{AuditFinding, AuditPolicy};
use crate::aws::{self, Aws, Limiter};
use crate::clock::Clock;
use crate::config;
use crate::rules::Severity;

/// The audit could not read everything.
pub const EXIT_INCOMPLETE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    fn severity(self) -> Severity {
        match self {
            Level::Info => Severity::Info,
            Level::Low => Severity::Low,
            Level::Medium => Severity::Medium,
            Level::High => Severity::High,
            Level::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A config file: its [aws] regions, [audit] admin_principals, [kms] allowed_principals
    /// (also admins) and usage settings.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A region to audit (repeatable). Default: the config's regions, else AWS_REGION.
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// Output: a table (the default on a terminal) or JSON lines (the default otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Exit 1 if a finding is at least this severe.
    #[arg(long, value_enum, default_value = "info")]
    pub fail_on: Level,
    /// Keys read at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Do not look up the recent use of keys pending deletion (no LookupEvents calls).
    #[arg(long)]
    pub no_usage: bool,
}

fn table(findings: &[AuditFinding]) -> String {
    let mut out = format!(
        "{:<9} {:<37} {:<38} {:<28} MESSAGE\n",
        "SEVERITY", "ID", "KEY", "STATEMENT"
    );
    for f in findings {
        let statement = match &f.statement {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "{:<9} {:<37} {:<38} {:<28} {}\n",
            f.severity.as_str(),
            f.id,
            crate::arn::short_name(&f.key_arn),
            statement,
            f.message
        ));
    }
    out
}

pub fn audit(args: AuditArgs) -> ExitCode {
    let (regions, policy, kms) = match config::load_audit(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let name = args
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return super::config_error(&name, &e);
        }
    };
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let pages = if args.no_usage || !kms.usage.enabled() {
        0
    } else {
        kms.usage.pages
    };
    super::runtime(true).block_on(run(
        args.regions,
        regions,
        policy,
        pages,
        args.concurrency.into(),
        format,
        args.fail_on,
    ))
}

async fn run(
    flags: Vec<String>,
    configured: Vec<String>,
    policy: AuditPolicy,
    usage_pages: usize,
    concurrency: usize,
    format: Format,
    fail_on: Level,
) -> ExitCode {
    let sdk = aws::load_sdk_config().await;
    let regions = if !flags.is_empty() {
        flags
    } else if !configured.is_empty() {
        configured
    } else {
        sdk.region().map(|r| vec![r.to_string()]).unwrap_or_default()
    };
    if let Some(bad) = regions.iter().find(|r| !crate::arn::is_region(r)) {
        eprintln!("keys audit: {bad:?} is not an AWS region name like \"eu-west-1\"");
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(first) = regions.first().cloned() else {
        eprintln!("keys audit: no region: give --region, a config with aws.regions, or AWS_REGION");
        return ExitCode::from(EXIT_CONFIG);
    };
    let aws = Aws::new(sdk, Clock::new());
    let account = match aws::sts::caller_identity(&aws, &first).await {
        Ok(id) => id.account,
        Err(e) => {
            eprintln!("keys audit: cannot tell which account this is (sts:GetCallerIdentity): {e}");
            return ExitCode::from(EXIT_INCOMPLETE);
        }
    };
    let settings = Arc::new(Settings {
        account,
        policy,
        concurrency,
        usage_pages,
    });
    let api = Arc::new(aws::kms::Kms::new(aws.clone()));
    // NOTE: a quarter of the LookupEvents quota, so a daemon polling the same regions keeps its
    // share (it takes cloudtrail.max_requests_per_second, 1 of 2 by default).
    let lookup = (usage_pages > 0).then(|| {
        Arc::new(aws::cloudtrail::CloudTrail::new(
            aws.clone(),
            Arc::new(Limiter::new(0.5)),
        ))
    });
    let now = aws.clock().now();
    let (mut all, mut keys, mut managed, mut failures) = (Vec::new(), 0, 0, 0);
    for region in &regions {
        let progress = |done: usize, total: usize| {
            if total >= 100 && (done.is_multiple_of(100) || done == total) {
                eprintln!("keys audit: {region}: {done}/{total} keys");
            }
        };
        let r = inventory::region(
            api.clone(),
            lookup.clone(),
            region,
            settings.clone(),
            now,
            &progress,
        )
        .await;
        keys += r.keys;
        managed += r.aws_managed;
        failures += r.failures;
        all.extend(r.findings);
    }
    let mut stdout = std::io::stdout().lock();
    let written = match format {
        Format::Table => stdout.write_all(table(&all).as_bytes()),
        Format::Json => all.iter().try_for_each(|f| {
            let line = serde_json::to_string(f).unwrap_or_default();
            writeln!(stdout, "{line}")
        }),
    };
    if written.and_then(|_| stdout.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    let by = |s: Severity| all.iter().filter(|f| f.severity == s).count();
    eprintln!(
        "keys audit: {} region(s), {keys} customer-managed key(s) ({managed} AWS-managed skipped); {} finding(s): {} critical, {} high, {} medium, {} low, {} info; {failures} failed read(s)",
        regions.len(),
        all.len(),
        by(Severity::Critical),
        by(Severity::High),
        by(Severity::Medium),
        by(Severity::Low),
        by(Severity::Info),
    );
    if failures > 0 {
        eprintln!("keys audit: incomplete: some AWS calls failed (see the kms_key_unreadable findings)");
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    if all.iter().any(|f| f.severity >= fail_on.severity()) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
