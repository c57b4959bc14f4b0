//! Repair and parse speed.
//!
//!     cargo bench --bench repair
//!
//! Target: ≤ 5 µs to parse a 200-byte broken action (llm_json alone took
//! about 8 µs). The 10 KB document shows how cost grows with size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use statewise::action::{parse_action, repair};

/// A typical broken action: prose, a fence, single quotes, an unquoted key,
/// a trailing comma, a Python literal and a missing closer.
const ACTION: &str = "I'll compute the total cost first, then answer.\n```json\n{'tool_calls': \
    [{'name': 'calculator', arguments: {'expression': '(1234 * 5678) / 3 + 17.5', 'precise': True, \
    'note': 'user asked'},}]\n```";

/// About 10 KB: records with comments, single quotes and trailing commas, cut off.
fn document() -> String {
    let mut doc = String::from("Here are the records:\n[\n");
    let mut i = 0;
    while doc.len() < 10_000 {
        doc.push_str(&format!(
            "  {{'id': {i}, name: 'item {i}', 'tags': ['a', 'b',], 'ok': True, // note\n  'note': \"say \"hi\" {i}\"}},\n"
        ));
        i += 1;
    }
    doc
}

fn bench(c: &mut Criterion) {
    assert!(
        (150..=250).contains(&ACTION.len()),
        "action is {} bytes",
        ACTION.len()
    );
    assert!(parse_action(ACTION).is_ok());
    let doc = document();
    assert!(repair(&doc).is_ok());

    let mut group = c.benchmark_group("repair");
    group.throughput(Throughput::Bytes(ACTION.len() as u64));
    group.bench_function("parse_action/200B broken action", |b| {
        b.iter(|| parse_action(black_box(ACTION)))
    });
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.bench_function("repair/10KB document", |b| {
        b.iter(|| repair(black_box(&doc)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
