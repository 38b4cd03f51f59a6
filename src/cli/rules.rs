//! `trailguard rules list|test`.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

fn load(path: Option<&Path>) -> Result<crate::rules::RuleSet, ExitCode> {
    config::load_rules(path)
        .map_err(|e| super::config_error(&path.map(|p| p.display().to_string()).unwrap_or_default(), &e))
}

pub fn list(path: Option<&Path>) -> ExitCode {
    let rules = match load(path) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for r in &rules.rules {
        let actions: Vec<&str> = r.actions.iter().map(|a| a.as_str()).collect();
        println!(
            "{}\t{}\t{}\t{}\t{} test(s)\t{}",
            r.id,
            r.severity.as_str(),
            actions.join(","),
            r.source,
            r.tests.len(),
            r.pattern
        );
    }
    for (id, by) in &rules.disabled {
        println!("{id}\tdisabled\t-\t{by}\t-\t-");
    }
    println!(
        "iam_access_key_unrotated\tmedium\tiam.action\tbuilt-in (IAM sweep)\t-\tactive key older than iam.max_key_age"
    );
    println!(
        "iam_access_key_unused\tmedium\tiam.action\tbuilt-in (IAM sweep)\t-\tactive key unused for iam.max_unused_age"
    );
    ExitCode::SUCCESS
}

pub fn test(path: Option<&Path>) -> ExitCode {
    let rules = match load(path) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let results = rules.run_tests();
    let failed = results.iter().filter(|r| r.2.is_some()).count();
    for (rule, case, failure) in &results {
        match failure {
            None => println!("PASS {rule}: {case}"),
            Some(why) => println!("FAIL {rule}: {case}: {why}"),
        }
    }
    let untested: Vec<&str> = rules
        .rules
        .iter()
        .filter(|r| r.tests.is_empty())
        .map(|r| r.id.as_str())
        .collect();
    if !untested.is_empty() {
        println!("note: rules without test cases: {}", untested.join(", "));
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
