//! `trailguard scan`: the rules over recorded events ([`crate::scan`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config;

pub fn run(config_path: Option<&Path>, paths: &[PathBuf]) -> ExitCode {
    let name = config_path.map(|p| p.display().to_string()).unwrap_or_default();
    let rules = match config::load_rules(config_path) {
        Ok(r) => r,
        Err(e) => return super::config_error(&name, &e),
    };
    let policy = match config::load_policy(config_path) {
        Ok(p) => p,
        Err(e) => return super::config_error(&name, &e),
    };
    #[allow(clippy::disallowed_methods)] // NOTE: wall time of a CLI run, not daemon timing.
    let started = std::time::Instant::now();
    let mut scanner = crate::scan::Scanner::new(&rules, Some(&policy));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = scanner
        .scan_paths(paths, &mut out)
        .and_then(|_| std::io::Write::flush(&mut out));
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("scan: {e}");
        return ExitCode::FAILURE;
    }
    let stats = scanner.stats();
    for u in &stats.unreadable {
        eprintln!("unreadable: {u}");
    }
    eprintln!("{}", stats.summary(started.elapsed().as_secs_f64()));
    if stats.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
