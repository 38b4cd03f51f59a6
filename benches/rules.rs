//! Rule evaluation alone (no I/O): the built-in rule set over one record, for records that
//! match and records that do not. `cargo bench --bench rules`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trailguard::rules::RuleSet;

fn record(file: &str) -> String {
    let path = format!("{}/tests/fixtures/cloudtrail/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn bench(c: &mut Criterion) {
    let set = RuleSet::builtin();
    let samples: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/aws-sample-events.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let cases = [
        ("pending_deletion_match", samples[18]["record"].to_string()),
        (
            "disable_key_match",
            record("elastic-integrations-aws-cloudtrail/test-disable-key-json.log"),
        ),
        (
            "assume_role_no_match",
            record("elastic-integrations-aws-cloudtrail/test-assume-role-json.log"),
        ),
    ];
    let mut g = c.benchmark_group("builtin_rules");
    for (name, json) in &cases {
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| set.matching(std::hint::black_box(json.as_bytes())).unwrap())
        });
        g.bench_function(format!("{name}_parse_only"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(json.as_bytes()))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
