//! Policy evaluation at 10 / 100 / 1,000 policies, warm (per-action
//! candidate set cached) and cold (first evaluation of an action).

// A benchmark with broken fixtures should stop loudly, and criterion's
// macros generate undocumented items.
#![allow(clippy::expect_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use signoff_core::ActionRequest;
use signoff_policy::{EvalInput, PolicySet};

/// A realistic mix: mostly per-action permits with conditions on the
/// environment and context, a quarter of them needing approval, a few
/// forbids, some action-group policies and two with no action constraint.
fn policies(n: usize) -> String {
    let services = (n / 10).max(1);
    let mut out = String::new();
    out.push_str(
        "@id(\"no-blind-prod\") @reason(\"prod actions need a justification\")\n\
         forbid(principal, action, resource) when { context.environment == \"prod\" && context.justification == \"\" };\n\
         @id(\"break-glass\") @approval(\"security:2\") @ttl(\"15m\")\n\
         permit(principal is User, action, resource) when { context has break_glass && context.break_glass };\n",
    );
    for i in 2..n {
        let svc = i % services;
        let op = i / services;
        let action = format!("svc{svc}.op{op}");
        match i % 20 {
            0 => out.push_str(&format!(
                "@id(\"forbid-{i}\") forbid(principal, action == Action::\"{action}\", resource)\n  \
                 when {{ context.environment == \"prod\" && context has force && context.force }};\n"
            )),
            1 | 2 => out.push_str(&format!(
                "@id(\"group-{i}\") permit(principal in Group::\"sre\", action in Action::\"svc{svc}\", resource)\n  \
                 when {{ context.gate == \"exec\" && context.environment != \"prod\" }};\n"
            )),
            3..=7 => out.push_str(&format!(
                "@id(\"approve-{i}\") @approval(\"sre:2,dba\") @ttl(\"30m\") @reason(\"large change\")\n\
                 permit(principal, action == Action::\"{action}\", resource)\n  \
                 when {{ context.environment == \"prod\" && context has rows && context.rows >= 1000 }};\n"
            )),
            _ => out.push_str(&format!(
                "@id(\"allow-{i}\") permit(principal is Agent, action == Action::\"{action}\", resource == Resource::\"r{i}\")\n  \
                 when {{ context.environment == \"prod\" && context has rows && context.rows < 1000 }};\n"
            )),
        }
    }
    out
}

fn request(n: usize) -> ActionRequest {
    let services = (n / 10).max(1);
    // i % 20 == 9 → an allow-… policy; its conditions hold for this request.
    let i = if n >= 100 { 8 * services + 9 } else { 9 };
    let (svc, op) = (i % services, i / services);
    ActionRequest {
        action: format!("svc{svc}.op{op}"),
        resource: format!("r{i}"),
        environment: Some("prod".into()),
        context: json!({"rows": 10, "format": "csv", "table": "customers"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        justification: Some("nightly sync".into()),
        principal: "agent:etl-bot".parse().expect("principal"),
        on_behalf_of: Some("carol".into()),
    }
}

fn bench(c: &mut Criterion) {
    let groups = vec!["sre".to_owned(), "data".to_owned()];
    let mut warm = c.benchmark_group("evaluate_warm");
    for n in [10, 100, 1000] {
        let set = PolicySet::from_files(&[("bench.cedar".into(), policies(n))], None)
            .expect("policies load");
        let req = request(n);
        let input = EvalInput {
            request: &req,
            principal_groups: &groups,
            gate: "exec",
            principal_attributes: &signoff_core::PrincipalAttributes::default(),
        };
        let v = set.evaluate(&input);
        eprintln!("n={n}: {} policies, verdict {}", set.len(), v.summary());
        warm.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| set.evaluate(black_box(input)))
        });
    }
    warm.finish();

    let mut cold = c.benchmark_group("evaluate_cold");
    for n in [10, 100, 1000] {
        let set = PolicySet::from_files(&[("bench.cedar".into(), policies(n))], None)
            .expect("policies load");
        let req = request(n);
        let input = EvalInput {
            request: &req,
            principal_groups: &groups,
            gate: "exec",
            principal_attributes: &signoff_core::PrincipalAttributes::default(),
        };
        cold.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| {
                set.clear_cache();
                set.evaluate(black_box(input))
            })
        });
    }
    cold.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
