//! Policy loading: arbitrary text as a `.cedar` file (the first line, if it
//! starts with `//schema`, splits off a schema), then one evaluation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signoff_core::ActionRequest;
use signoff_policy::{EvalInput, PolicySet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policy, schema) = match text.split_once("\n//schema\n") {
        Some((p, s)) => (p, Some(("fuzz.cedarschema".to_owned(), s.to_owned()))),
        None => (text, None),
    };
    let Ok(set) = PolicySet::from_files(&[("fuzz.cedar".to_owned(), policy.to_owned())], schema)
    else {
        return;
    };
    let mut context = serde_json::Map::new();
    context.insert("rows".into(), serde_json::json!(5000));
    let request = ActionRequest {
        action: "db.export".into(),
        resource: "customers".into(),
        environment: Some("prod".into()),
        context,
        justification: Some("fuzz".into()),
        principal: "agent:fuzz".parse().expect("a valid principal"),
        on_behalf_of: None,
    };
    let _ = set.evaluate(&EvalInput {
        request: &request,
        principal_groups: &["sre".to_owned()],
        gate: "exec",
    });
    // The same sources build the same set.
    let again = PolicySet::from_sources(set.sources()).expect("a loaded set reloads");
    assert_eq!(again.hash(), set.hash());
});
