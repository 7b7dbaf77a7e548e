//! Verdict rules, entity/context mapping, load diagnostics and the index.

use super::*;
use serde_json::json;
use signoff_core::Decision;
use signoff_core::PrincipalAttributes;

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// A set loaded without the schema check (see `load::compile_with`).
fn set(list: &[(&str, &str)]) -> PolicySet {
    let sources = PolicySources {
        files: files(list),
        schema: None,
        catalog: None,
    };
    match crate::load::compile_with(&sources, false) {
        Ok(c) => PolicySet {
            inner: std::sync::Arc::new(c),
        },
        Err(e) => panic!("load failed:\n{e}"),
    }
}

fn one(text: &str) -> PolicySet {
    set(&[("p.cedar", text)])
}

fn load_err(list: &[(&str, &str)], schema: Option<(&str, &str)>) -> String {
    let schema = schema.map(|(n, t)| (n.to_string(), t.to_string()));
    PolicySet::from_files(&files(list), schema)
        .unwrap_err()
        .to_string()
}

fn req(principal: &str, action: &str) -> ActionRequest {
    ActionRequest {
        action: action.into(),
        resource: "customers".into(),
        environment: None,
        context: serde_json::Map::new(),
        justification: None,
        principal: principal.parse().unwrap(),
        on_behalf_of: None,
    }
}

fn eval_with(s: &PolicySet, r: &ActionRequest, groups: &[&str], gate: &str) -> Verdict {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let input = EvalInput {
        request: r,
        principal_groups: &groups,
        gate,
        principal_attributes: &signoff_core::PrincipalAttributes::default(),
    };
    let v = s.evaluate(&input);
    // The index must never change a verdict.
    assert_eq!(
        v,
        s.inner.evaluate_full(&input, &s.facts(&input)),
        "index and full set disagree"
    );
    v
}

fn eval(s: &PolicySet, r: &ActionRequest) -> Verdict {
    eval_with(s, r, &[], "exec")
}

fn decision(s: &PolicySet, r: &ActionRequest) -> Decision {
    eval(s, r).decision
}

#[test]
fn policy_set_is_shareable() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<PolicySet>();
}

// ---- decision rules ----

#[test]
fn plain_permit_allows() {
    let s = one(
        r#"@id("ok") @reason("routine") permit(principal, action == Action::"db.read", resource);"#,
    );
    let v = eval(&s, &req("agent:bot", "db.read"));
    assert_eq!(v.decision, Decision::Allow);
    assert_eq!(v.policy_ids, vec!["ok"]);
    assert_eq!(v.reasons, vec!["routine"]);
    assert_eq!(v.requirement, None);
    assert_eq!(v.policy_set_hash, s.hash());
}

#[test]
fn forbid_beats_permit() {
    let s = one(r#"
        @id("all") permit(principal, action, resource);
        @id("no-drop") @reason("dropping tables is never automated") forbid(principal, action == Action::"db.drop", resource);
        @id("no-drop-2") forbid(principal, action in Action::"db", resource) when { context has rows && context.rows > 100 };
        "#);
    let v = eval(&s, &req("agent:bot", "db.drop"));
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.policy_ids, vec!["no-drop"]);
    assert_eq!(v.reasons, vec!["dropping tables is never automated"]);

    let mut r = req("agent:bot", "db.drop");
    r.context.insert("rows".into(), json!(1000));
    let v = eval(&s, &r);
    assert_eq!(v.policy_ids, vec!["no-drop", "no-drop-2"]);
    assert_eq!(
        v.reasons,
        vec![
            "dropping tables is never automated",
            "forbidden by policy no-drop-2"
        ]
    );
    assert_eq!(decision(&s, &req("agent:bot", "db.read")), Decision::Allow);
}

#[test]
fn approvals_merge_with_highest_count_and_shortest_ttl() {
    let s = one(r#"
        @id("a") @approval("sre:2,security") @ttl("1h") @reason("prod export")
        permit(principal, action == Action::"db.export", resource) when { context.environment == "prod" };
        @id("b") @approval("sre:1,dba:3") @ttl("30m") @reason("large export")
        permit(principal, action in Action::"db", resource) when { context has rows && context.rows > 1000 };
        @id("c") @approval("legal")
        permit(principal, action == Action::"db.export", resource) when { context has pii };
        @id("plain") permit(principal, action == Action::"db.export", resource);
        "#);
    let mut r = req("agent:etl", "db.export");
    r.environment = Some("prod".into());
    r.context.insert("rows".into(), json!(5000));
    let v = eval(&s, &r);
    assert_eq!(v.decision, Decision::ApprovalRequired);
    assert_eq!(
        v.requirement.as_ref().map(ToString::to_string).as_deref(),
        Some("dba:3,security:1,sre:2")
    );
    assert_eq!(v.ttl_seconds, Some(1800));
    assert_eq!(v.policy_ids, vec!["a", "b", "plain"]);
    assert_eq!(v.reasons, vec!["prod export", "large export"]);

    // Only an approval permit without @ttl: the engine's default applies.
    let mut r = req("agent:etl", "db.export");
    r.context.insert("pii".into(), json!(true));
    let v = eval(&s, &r);
    assert_eq!(v.decision, Decision::ApprovalRequired);
    assert_eq!(
        v.requirement.as_ref().map(ToString::to_string).as_deref(),
        Some("legal:1")
    );
    assert_eq!(v.ttl_seconds, None);

    // Only the plain permit matches.
    assert_eq!(
        decision(&s, &req("agent:etl", "db.export")),
        Decision::Allow
    );
}

#[test]
fn approval_permit_wins_over_plain_permit() {
    let s = one(r#"
        @id("plain") permit(principal, action, resource);
        @id("strict") @approval("sre") permit(principal, action == Action::"k8s.delete", resource);
        "#);
    let v = eval(&s, &req("agent:bot", "k8s.delete"));
    assert_eq!(v.decision, Decision::ApprovalRequired);
    assert_eq!(v.policy_ids, vec!["plain", "strict"]);
}

#[test]
fn nothing_permits_denies() {
    let s = one(r#"permit(principal, action == Action::"db.read", resource);"#);
    let v = eval(&s, &req("agent:bot", "db.write"));
    assert_eq!(v.decision, Decision::Deny);
    assert!(v.policy_ids.is_empty());
    assert_eq!(v.reasons, vec!["no policy permits this action"]);
    let s = set(&[("only-comments.cedar", "// nothing yet\n")]);
    assert!(s.is_empty());
    assert_eq!(
        eval(&s, &req("agent:bot", "db.write")).reasons,
        vec!["no policy permits this action"]
    );
}

#[test]
fn evaluation_error_fails_closed() {
    // Cedar alone skips the erroring forbid and allows; signoff must deny.
    let s = one(r#"
        @id("all") permit(principal, action, resource);
        @id("big") forbid(principal, action, resource) when { context.rows > 5 };
        "#);
    let mut r = req("agent:bot", "db.export");
    r.context.insert("rows".into(), json!("lots"));
    let v = eval(&s, &r);
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.policy_ids, vec!["big"]);
    assert_eq!(v.reasons, vec!["policy evaluation failed"]);
    assert_eq!(
        v.errors,
        vec!["error while evaluating policy `big`: type error: expected long, got string"]
    );

    // A plain permit that errors (missing attribute) just does not apply:
    // skipping it can only deny more, so other permits still decide.
    let s = one(r#"
        @id("p") permit(principal, action, resource) when { context.rows > 5 };
        @id("reads") permit(principal, action == Action::"db.read", resource);
        "#);
    let v = eval(&s, &req("agent:bot", "db.export"));
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.reasons, vec!["no policy permits this action"]);
    assert_eq!(
        eval(&s, &req("agent:bot", "db.read")).decision,
        Decision::Allow
    );

    // An approval permit that errors must not be skipped: a plain permit
    // would otherwise allow without the approval.
    let s = one(r#"
        @id("plain") permit(principal, action, resource);
        @id("gate") @approval("sre") permit(principal, action, resource) when { context.rows > 5 };
        "#);
    let v = eval(&s, &req("agent:bot", "db.export"));
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.policy_ids, vec!["gate"]);
    assert!(v.errors[0].contains("`gate`"), "{:?}", v.errors);

    // Overflow in a forbid.
    let s = one(r#"
        @id("all") permit(principal, action, resource);
        @id("o") forbid(principal, action, resource) when { context.n + 1 > 0 };
        "#);
    let mut r = req("agent:bot", "x");
    r.context.insert("n".into(), json!(i64::MAX));
    assert_eq!(eval(&s, &r).decision, Decision::Deny);
}

#[test]
fn context_cedar_cannot_accept_denies() {
    let s = one("permit(principal, action, resource);");
    let mut r = req("agent:bot", "db.export");
    r.context.insert("ratio".into(), json!(0.5));
    let v = eval(&s, &r);
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.reasons, vec!["request context is not valid for cedar"]);
    assert_eq!(v.errors.len(), 1);
    assert!(
        v.errors[0].starts_with("invalid request context"),
        "{:?}",
        v.errors
    );
}

// ---- entities and context ----

#[test]
fn action_groups_follow_dotted_prefixes() {
    let s = one(r#"
        @id("db") permit(principal, action in Action::"db", resource);
        @id("k8s") @approval("sre") permit(principal, action in [Action::"k8s", Action::"other"], resource);
        @id("ns") forbid(principal, action, resource) when { action in Action::"k8s.namespace" && context.environment == "prod" };
        "#);
    assert_eq!(
        decision(&s, &req("agent:bot", "db.export")),
        Decision::Allow
    );
    assert_eq!(decision(&s, &req("agent:bot", "db")), Decision::Allow);
    assert_eq!(
        decision(&s, &req("agent:bot", "dbx.export")),
        Decision::Deny
    );
    assert_eq!(
        decision(&s, &req("agent:bot", "k8s.namespace.delete")),
        Decision::ApprovalRequired
    );
    assert_eq!(
        decision(&s, &req("agent:bot", "other")),
        Decision::ApprovalRequired
    );
    let mut r = req("agent:bot", "k8s.namespace.delete");
    r.environment = Some("prod".into());
    assert_eq!(eval(&s, &r).policy_ids, vec!["ns"]);
    let mut r = req("agent:bot", "k8s.pod.delete");
    r.environment = Some("prod".into());
    assert_eq!(decision(&s, &r), Decision::ApprovalRequired);
}

#[test]
fn principal_groups_and_types() {
    let s = one(r#"
        @id("sre") permit(principal in Group::"sre", action == Action::"k8s.restart", resource);
        @id("agents") permit(principal is Agent, action == Action::"ci.run", resource);
        @id("alice") permit(principal == User::"alice", action == Action::"db.read", resource);
        @id("bot-in-ops") permit(principal is Agent in Group::"ops", action == Action::"db.read", resource);
        "#);
    let restart = req("user:bob", "k8s.restart");
    assert_eq!(
        eval_with(&s, &restart, &["sre"], "exec").decision,
        Decision::Allow
    );
    assert_eq!(
        eval_with(&s, &restart, &["dba", "sre"], "exec").decision,
        Decision::Allow
    );
    assert_eq!(
        eval_with(&s, &restart, &["dba"], "exec").decision,
        Decision::Deny
    );
    assert_eq!(decision(&s, &req("agent:ci", "ci.run")), Decision::Allow);
    assert_eq!(decision(&s, &req("user:ci", "ci.run")), Decision::Deny);
    assert_eq!(decision(&s, &req("user:alice", "db.read")), Decision::Allow);
    assert_eq!(decision(&s, &req("agent:alice", "db.read")), Decision::Deny);
    assert_eq!(
        eval_with(&s, &req("agent:etl", "db.read"), &["ops"], "exec").decision,
        Decision::Allow
    );
    assert_eq!(
        eval_with(&s, &req("user:etl", "db.read"), &["ops"], "exec").decision,
        Decision::Deny
    );
}

#[test]
fn context_carries_signoff_keys_and_request_keys() {
    let s = one(r#"
        @id("env") permit(principal, action == Action::"a", resource) when { context.environment == "staging" };
        @id("obo") permit(principal, action == Action::"b", resource) when { context.on_behalf_of == "carol" };
        @id("gate") permit(principal, action == Action::"c", resource) when { context.gate == "mcp" };
        @id("just") permit(principal, action == Action::"d", resource) when { context.justification like "*INC-*" };
        @id("empty") permit(principal, action == Action::"e", resource) when { context.environment == "" && context.on_behalf_of == "" && context.justification == "" };
        @id("own") permit(principal, action == Action::"f", resource == Resource::"customers") when { context.rows <= 10 && context.tags.contains("ok") };
        "#);
    let mut r = req("agent:bot", "a");
    assert_eq!(decision(&s, &r), Decision::Deny);
    r.environment = Some("staging".into());
    assert_eq!(decision(&s, &r), Decision::Allow);

    let mut r = req("agent:bot", "b");
    r.on_behalf_of = Some("carol".into());
    assert_eq!(decision(&s, &r), Decision::Allow);

    let r = req("agent:bot", "c");
    assert_eq!(eval_with(&s, &r, &[], "exec").decision, Decision::Deny);
    assert_eq!(eval_with(&s, &r, &[], "mcp").decision, Decision::Allow);

    let mut r = req("agent:bot", "d");
    r.justification = Some("fixing INC-42".into());
    assert_eq!(decision(&s, &r), Decision::Allow);

    assert_eq!(decision(&s, &req("agent:bot", "e")), Decision::Allow);

    let mut r = req("agent:bot", "f");
    r.context.insert("rows".into(), json!(10));
    r.context.insert("tags".into(), json!(["ok", "x"]));
    assert_eq!(decision(&s, &r), Decision::Allow);
    r.resource = "orders".into();
    assert_eq!(decision(&s, &r), Decision::Deny);
}

// ---- loading ----

#[test]
fn ids_default_to_file_and_index() {
    let s = set(&[
        ("b.cedar", "permit(principal, action, resource);\n@id(\"named\") permit(principal, action, resource);\npermit(principal, action, resource);"),
        ("a.cedar", "forbid(principal, action == Action::\"x\", resource);"),
    ]);
    assert_eq!(
        s.policy_ids(),
        vec!["a.cedar:0", "b.cedar:0", "b.cedar:2", "named"]
    );
    assert_eq!(s.len(), 4);
}

#[test]
fn parse_errors_are_located_and_all_reported() {
    let err = load_err(
        &[
            ("a.cedar", "permit(principal, action, resource);\n\npermit(principal, action == Action::\"x\", resource) when { context.rows > };\nfoo"),
            ("b.cedar", "permit(principal, action, resource)\n  when { true }\n  unles { false };"),
            ("c.cedar", "permit(principal, action, resource);"),
        ],
        None,
    );
    assert_eq!(
        err,
        "a.cedar:3:74: unexpected token `}`\n\
         a.cedar:4:4: unexpected end of input\n\
         b.cedar:3:3: invalid policy condition: unles (help: condition must be either `when` or `unless`)"
    );
}

#[test]
fn duplicate_ids_name_both_locations() {
    let err = load_err(
        &[
            (
                "a.cedar",
                "@id(\"same\")\npermit(principal, action, resource);",
            ),
            (
                "b.cedar",
                "\n\n  @id(\"same\") forbid(principal, action, resource);",
            ),
        ],
        None,
    );
    assert_eq!(
        err,
        "b.cedar:3:3: duplicate policy id `same`: also defined at a.cedar:1:1"
    );
    let err = load_err(
        &[("a.cedar", "@id(\"a.cedar:1\") permit(principal, action, resource);\npermit(principal, action, resource);")],
        None,
    );
    assert_eq!(
        err,
        "a.cedar:2:1: duplicate policy id `a.cedar:1`: also defined at a.cedar:1:1"
    );
}

#[test]
fn bad_annotations_are_located() {
    let text = "permit(principal, action, resource);\n\
                @id(\"x\")\n\
                @approval(\"sre:0\")\n\
                permit(principal, action, resource);\n\
                @ttl(\"soon\") @approval(\"sre\") permit(principal, action, resource);\n\
                @ttl(\"0m\") @approval(\"sre\") permit(principal, action, resource);\n\
                @reason(\"no\")\n  @approval(\"sre\") forbid(principal, action, resource);\n\
                @id(\"\") permit(principal, action, resource);\n";
    assert_eq!(
        load_err(&[("p.cedar", text)], None),
        "p.cedar:3:1: invalid @approval `sre:0`: invalid count `0` for group `sre`: expected a number from 1 to 100\n\
         p.cedar:5:1: invalid @ttl `soon`: expected a duration such as 90s, 30m, 1h30m or 2d\n\
         p.cedar:6:1: invalid @ttl `0m`: must be greater than zero\n\
         p.cedar:8:3: @approval on forbid policy `p.cedar:4`: only permit policies can require approval\n\
         p.cedar:9:1: @id must not be empty"
    );
}

#[test]
fn templates_are_rejected() {
    assert_eq!(
        load_err(&[("t.cedar", "permit(principal, action, resource);\n permit(principal == ?principal, action, resource);")], None),
        "t.cedar:2:2: policy templates (?principal / ?resource slots) are not supported; write a static policy"
    );
}

const SCHEMA: &str = r#"
entity Group;
entity Agent, User in [Group];
entity Resource;
action "db";
action "db.export" in ["db"] appliesTo {
  principal: [Agent, User],
  resource: Resource,
  context: { environment: String, justification: String, gate: String, on_behalf_of: String, rows: Long },
};
"#;

#[test]
fn schema_validation_errors_are_located() {
    let policies = "@id(\"ok\") permit(principal, action == Action::\"db.export\", resource) when { context.rows < 10 };\n\
                    @id(\"typo\")\npermit(principal, action == Action::\"db.export\", resource)\n  when { context.rowz > 3 };\n\
                    @id(\"bad-type\") permit(principal is Robot, action in Action::\"db\", resource);";
    assert_eq!(
        load_err(&[("p.cedar", policies)], Some(("s.cedarschema", SCHEMA))),
        "p.cedar:4:10: for policy `typo`, attribute `rowz` in context for Action::\"db.export\" not found (help: did you mean `rows`?)\n\
         p.cedar:5:37: for policy `bad-type`, unrecognized entity type `Robot` (help: did you mean `Agent`?)"
    );
    let ok = PolicySet::from_files(
        &files(&[("p.cedar", policies.lines().next().unwrap())]),
        Some(("s.cedarschema".into(), SCHEMA.into())),
    );
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(
        load_err(
            &[("p.cedar", "permit(principal, action, resource);")],
            Some(("s.cedarschema", "entity Agent;\nentity bogus bogus;"))
        ),
        "s.cedarschema:2:14: error parsing schema: unexpected token `bogus`"
    );
}

#[test]
fn load_dir_reads_cedar_files_and_one_schema() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("b.cedar"),
        "@id(\"b\") permit(principal, action == Action::\"db.export\", resource);",
    )
    .unwrap();
    std::fs::write(
        p.join("a.cedar"),
        "@id(\"a\") permit(principal, action == Action::\"db.export\", resource);",
    )
    .unwrap();
    std::fs::write(p.join("README.md"), "not a policy").unwrap();
    std::fs::create_dir(p.join("sub.cedar")).unwrap();
    std::fs::write(p.join("s.cedarschema"), SCHEMA).unwrap();
    let s = PolicySet::load_dir(p).unwrap();
    assert_eq!(s.policy_ids(), vec!["a", "b"]);

    // name 0x00 content 0x00, files sorted by name, schema included
    let mut h = sha2::Sha256::new();
    use sha2::Digest as _;
    for name in ["a.cedar", "b.cedar", "s.cedarschema"] {
        h.update(name);
        h.update([0]);
        h.update(std::fs::read(p.join(name)).unwrap());
        h.update([0]);
    }
    assert_eq!(s.hash(), hex::encode(h.finalize()));
    let same = PolicySet::from_files(
        &[
            (
                "b.cedar".into(),
                std::fs::read_to_string(p.join("b.cedar")).unwrap(),
            ),
            (
                "a.cedar".into(),
                std::fs::read_to_string(p.join("a.cedar")).unwrap(),
            ),
        ],
        Some(("s.cedarschema".into(), SCHEMA.into())),
    )
    .unwrap();
    assert_eq!(same.hash(), s.hash());

    std::fs::write(p.join("t.cedarschema"), SCHEMA).unwrap();
    let err = PolicySet::load_dir(p).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{0}: more than one *.cedarschema file in {0}: s.cedarschema, t.cedarschema",
            p.display()
        )
    );
}

#[test]
fn load_dir_reports_empty_and_missing_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().display().to_string();
    assert_eq!(
        PolicySet::load_dir(dir.path()).unwrap_err().to_string(),
        format!("{shown}: no *.cedar files in {shown}")
    );
    let missing = dir.path().join("nope");
    let e = PolicySet::load_dir(&missing).unwrap_err();
    assert_eq!(e.diagnostics[0].file, missing.display().to_string());
    assert_eq!(
        e.diagnostics[0].message,
        format!("policy directory {} does not exist", missing.display())
    );
    assert_eq!(
        PolicySet::from_files(&[], None).unwrap_err().to_string(),
        "no *.cedar files"
    );
}

// ---- index ----

#[test]
fn index_selects_only_matching_policies_and_caches() {
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "@id(\"p{i}\") permit(principal, action == Action::\"svc{i}.run\", resource);\n"
        ));
    }
    text.push_str("@id(\"grp\") permit(principal, action in Action::\"svc7\", resource);\n");
    text.push_str(
        "@id(\"any\") forbid(principal, action, resource) when { context.gate == \"mcp\" };\n",
    );
    text.push_str(
        "@id(\"ns\") permit(principal, action == Other::Action::\"svc7.run\", resource);\n",
    );
    let s = one(&text);
    let r = req("agent:bot", "svc7.run");
    let groups: Vec<String> = Vec::new();
    let input = EvalInput {
        request: &r,
        principal_groups: &groups,
        gate: "exec",
        principal_attributes: &signoff_core::PrincipalAttributes::default(),
    };
    let e = s.explain(&input);
    let ids: Vec<&str> = e.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["p7", "grp", "any"]);
    assert_eq!(e.skipped, 50);
    assert_eq!(e.verdict.decision, Decision::Allow);
    assert_eq!(e.verdict.policy_ids, vec!["grp", "p7"]);
    assert_eq!(s.inner.cache.len(), 1);
    let _ = s.evaluate(&input);
    assert_eq!(s.inner.cache.len(), 1);
    let _ = eval(&s, &req("agent:bot", "svc8.run"));
    assert_eq!(s.inner.cache.len(), 2);
}

/// A tiny deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const ACTIONS: [&str; 9] = [
    "svc0.read",
    "svc0.write",
    "svc1.read",
    "svc1.write.bulk",
    "svc2.read",
    "svc2",
    "svc3.admin.drop",
    "other",
    "svc1.write",
];

fn random_policy(rng: &mut Rng, i: usize) -> String {
    let effect = if rng.chance(20) { "forbid" } else { "permit" };
    let mut ann = format!("@id(\"g{i}\") ");
    if effect == "permit" && rng.chance(40) {
        ann.push_str(&format!(
            "@approval(\"{}\") ",
            rng.pick(&["sre", "sre:2", "security,sre", "dba:3"])
        ));
        if rng.chance(50) {
            ann.push_str(&format!("@ttl(\"{}\") ", rng.pick(&["5m", "1h", "2d"])));
        }
    }
    let scope_action = match rng.next() % 6 {
        0 => "action".to_owned(),
        1 => format!(
            "action in Action::\"{}\"",
            rng.pick(&["svc0", "svc1", "svc1.write", "svc3.admin", "nothing"])
        ),
        2 => format!(
            "action in [Action::\"{}\", Action::\"{}\"]",
            rng.pick(&["svc2", "svc0"]),
            rng.pick(&ACTIONS)
        ),
        3 => "action == Other::Action::\"svc0.read\"".to_owned(),
        _ => format!("action == Action::\"{}\"", rng.pick(&ACTIONS)),
    };
    let principal = rng.pick(&[
        "principal",
        "principal is Agent",
        "principal in Group::\"sre\"",
        "principal == User::\"alice\"",
        "principal is User in Group::\"ops\"",
    ]);
    let cond = rng.pick(&[
        "",
        "when { context.environment == \"prod\" }",
        "when { context.rows > 100 }",
        "unless { context.gate == \"mcp\" }",
        "when { action in Action::\"svc1\" }",
        "when { context has pii && context.pii }",
        "when { context.on_behalf_of != \"\" }",
    ]);
    format!("{ann}{effect}({principal}, {scope_action}, resource) {cond};\n")
}

#[test]
fn index_gives_the_same_verdicts_as_the_full_set() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut seen = std::collections::HashSet::new();
    for round in 0..8 {
        let text: String = (0..40)
            .map(|i| random_policy(&mut rng, round * 100 + i))
            .collect();
        let s = one(&text);
        for _ in 0..60 {
            let mut r = req(
                rng.pick(&["agent:bot", "user:alice", "user:bob"]),
                rng.pick(&ACTIONS),
            );
            if rng.chance(50) {
                r.environment = Some(rng.pick(&["prod", "dev"]).into());
            }
            if rng.chance(70) {
                // a string sometimes, to provoke evaluation errors
                let rows = if rng.chance(10) {
                    json!("many")
                } else {
                    json!(rng.next() % 300)
                };
                r.context.insert("rows".into(), rows);
            }
            if rng.chance(30) {
                r.context.insert("pii".into(), json!(rng.chance(50)));
            }
            if rng.chance(30) {
                r.on_behalf_of = Some("carol".into());
            }
            let groups: Vec<&str> = ["sre", "ops"]
                .into_iter()
                .filter(|_| rng.chance(40))
                .collect();
            let gate = rng.pick(&["exec", "mcp"]);
            // eval_with asserts index == full set
            let v = eval_with(&s, &r, &groups, gate);
            seen.insert((v.decision, v.errors.is_empty()));
        }
    }
    // The generator must exercise every outcome for the comparison to mean much.
    for d in [Decision::Allow, Decision::Deny, Decision::ApprovalRequired] {
        assert!(seen.contains(&(d, true)), "{d:?} never produced");
    }
    assert!(
        seen.contains(&(Decision::Deny, false)),
        "no evaluation error produced"
    );
}

// ---- explain ----

#[test]
fn explain_reports_each_candidate() {
    let s = set(&[(
        "p.cedar",
        r#"@id("plain") permit(principal, action in Action::"db", resource);
@id("export") @approval("sre:2") @ttl("30m") @reason("exports leave the building")
permit(principal, action == Action::"db.export", resource);
@id("no-prod") forbid(principal, action, resource) when { context.environment == "prod" };
@id("other") permit(principal, action == Action::"k8s.delete", resource);"#,
    )]);
    let mut r = req("agent:etl", "db.export");
    let groups = vec![];
    let input = EvalInput {
        request: &r,
        principal_groups: &groups,
        gate: "exec",
        principal_attributes: &signoff_core::PrincipalAttributes::default(),
    };
    assert_eq!(
        without_facts(&s.explain(&input).render()),
        "verdict: approval_required (sre:2) by export, plain\n\
         review window: 1800s\n\
         reason: exports leave the building\n\
         policies evaluated: 3 (1 skipped by the action index)\n  \
           determining    permit  plain    p.cedar:1:1\n  \
           determining    permit  export   p.cedar:2:1  @approval(\"sre:2\")  @reason(\"exports leave the building\")  @ttl(\"30m\")\n  \
           not satisfied  forbid  no-prod  p.cedar:4:1\n"
    );
    r.environment = Some("prod".into());
    let input = EvalInput {
        request: &r,
        principal_groups: &groups,
        gate: "exec",
        principal_attributes: &signoff_core::PrincipalAttributes::default(),
    };
    let e = s.explain(&input);
    let statuses: Vec<_> = e
        .policies
        .iter()
        .map(|p| (p.id.as_str(), p.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("plain", PolicyStatus::Satisfied),
            ("export", PolicyStatus::Satisfied),
            ("no-prod", PolicyStatus::Determining),
        ]
    );
    assert_eq!(e.verdict, s.evaluate(&input));
}

const CATALOG: &str = r#"
[[resource]]
name = "prod"
environment = "prod"

[[resource]]
name = "customers"
parent = "prod"
classification = "pii"

[[resource]]
pattern = "staging/*"
environment = "staging"
"#;

fn with_catalog(policies: &str, catalog: &str) -> PolicySet {
    match PolicySet::from_sources(&PolicySources {
        files: files(&[("p.cedar", policies)]),
        schema: None,
        catalog: Some(("catalog.toml".into(), catalog.into())),
    }) {
        Ok(s) => s,
        Err(e) => panic!("load failed:\n{e}"),
    }
}

fn eval_attrs(s: &PolicySet, r: &ActionRequest, attrs: &PrincipalAttributes) -> Verdict {
    let input = EvalInput {
        request: r,
        principal_groups: &[],
        gate: "exec",
        principal_attributes: attrs,
    };
    let v = s.evaluate(&input);
    assert_eq!(v, s.inner.evaluate_full(&input, &s.facts(&input)));
    v
}

fn at(resource: &str, env: Option<&str>) -> ActionRequest {
    ActionRequest {
        resource: resource.into(),
        environment: env.map(Into::into),
        ..req("agent:bot", "db.export")
    }
}

#[test]
fn policies_decide_on_catalog_facts_not_the_asserted_environment() {
    let s = with_catalog(
        r#"
@id("unknown") forbid(principal, action, resource) when { !resource.known };
@id("prod") @approval("sre:2")
permit(principal, action, resource) when { resource.environment == "prod" };
@id("staging") permit(principal, action, resource) when { resource.environment == "staging" };
"#,
        CATALOG,
    );
    let none = PrincipalAttributes::default();
    for env in [Some("prod"), Some("production"), Some("staging"), None] {
        let v = eval_attrs(&s, &at("customers", env), &none);
        assert_eq!(v.decision, Decision::ApprovalRequired, "--env {env:?}");
    }
    assert_eq!(
        eval_attrs(&s, &at("staging/db", Some("prod")), &none).decision,
        Decision::Allow
    );
    let v = eval_attrs(&s, &at("customers-v2", Some("staging")), &none);
    assert_eq!(
        (v.decision, v.policy_ids.clone()),
        (Decision::Deny, vec!["unknown".to_owned()])
    );
    // the facts recorded with the request
    let input = EvalInput {
        request: &at("customers", Some("staging")),
        principal_groups: &[],
        gate: "exec",
        principal_attributes: &none,
    };
    let facts = s.facts(&input);
    assert_eq!(facts.resource.environment.as_deref(), Some("prod"));
    assert_eq!(facts.asserted_environment.as_deref(), Some("staging"));
    assert!(facts.environment_mismatch);
}

#[test]
fn catalog_parents_principal_attributes_and_the_mismatch_flag_reach_cedar() {
    let s = with_catalog(
        r#"
@id("in-prod") forbid(principal, action, resource in Resource::"prod")
  when { context.environment_mismatch };
@id("own-env") permit(principal is Agent, action, resource)
  when { principal.environments.contains(resource.environment) && resource.classification == "pii" };
"#,
        CATALOG,
    );
    let prod_agent = PrincipalAttributes {
        environments: vec!["prod".into()],
        ..Default::default()
    };
    let staging_agent = PrincipalAttributes {
        environments: vec!["staging".into()],
        ..Default::default()
    };
    assert_eq!(
        eval_attrs(&s, &at("customers", Some("prod")), &prod_agent).decision,
        Decision::Allow
    );
    assert_eq!(
        eval_attrs(&s, &at("customers", None), &prod_agent).decision,
        Decision::Allow
    );
    assert_eq!(
        eval_attrs(&s, &at("customers", Some("prod")), &staging_agent).decision,
        Decision::Deny
    );
    let v = eval_attrs(&s, &at("customers", Some("dev")), &prod_agent);
    assert_eq!(
        (v.decision, v.policy_ids),
        (Decision::Deny, vec!["in-prod".to_owned()])
    );
}

#[test]
fn typos_are_schema_errors_with_their_location() {
    let err = PolicySet::from_files(
        &files(&[(
            "p.cedar",
            "permit(principal, action == Action::\"db.export\", resource)\n  when { context.enviroment == \"prod\" };\n",
        )]),
        None,
    )
    .unwrap_err();
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("p.cedar", 2, 10),
        "{err}"
    );
    assert!(d.message.contains("enviroment"), "{err}");
    let err = load_err(
        &[("p.cedar", "permit(principal is User, action, resource) when { principal.environments.contains(\"prod\") };")],
        None,
    );
    assert!(err.starts_with("p.cedar:1:"), "{err}");
    assert!(err.contains("environments"), "{err}");
    let err = load_err(
        &[(
            "p.cedar",
            "permit(principal, action, resource) when { resource.enviornment == \"prod\" };",
        )],
        None,
    );
    assert!(err.contains("enviornment"), "{err}");
}

#[test]
fn a_broken_catalog_fails_the_load_with_its_location() {
    let err = PolicySet::from_sources(&PolicySources {
        files: files(&[("p.cedar", "permit(principal, action, resource);")]),
        schema: None,
        catalog: Some((
            "catalog.toml".into(),
            "[[resource]]\nname = \"a\"\nparent = \"b\"\n".into(),
        )),
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "catalog.toml:3:10: parent `b` of `a` is not a resource `name` in the catalog"
    );
}

#[test]
fn the_catalog_is_part_of_the_set_hash_and_sources() {
    let policy = "permit(principal, action, resource) when { resource.known };";
    let a = with_catalog(policy, CATALOG);
    let b = with_catalog(policy, &CATALOG.replace("pii", "financial"));
    let none = one(policy);
    assert_ne!(a.hash(), b.hash());
    assert_ne!(a.hash(), none.hash());
    let again = PolicySet::from_sources(a.sources()).unwrap();
    assert_eq!(again.hash(), a.hash());
    assert_eq!(
        again.resource_facts("customers"),
        a.resource_facts("customers")
    );
    // a set stored before the catalog existed decodes without one
    let old: PolicySources = serde_json::from_str(
        r#"{"files":[["p.cedar","permit(principal, action, resource);"]],"schema":null}"#,
    )
    .unwrap();
    assert_eq!(old.catalog, None);
}

#[test]
fn actions_outside_the_registry_are_warned_about() {
    let s = with_catalog(
        "@id(\"x\") permit(principal, action == Action::\"db.exprot\", resource);\n@id(\"y\") permit(principal, action in Action::\"db\", resource) when { context has rows && context.rows > 5 };",
        &format!("{CATALOG}\n[[action]]\nname = \"db.export\"\ncontext = {{ rows = \"long\" }}\n"),
    );
    let warnings: Vec<String> = s.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("p.cedar:1:1: warning: policy `x` names action `db.exprot`, which is not in the action registry"),
        "{warnings:#?}"
    );
    // without the declaration, a context key the schema does not know makes the policy impossible
    let s = with_catalog(
        "@id(\"y\") permit(principal, action == Action::\"db.export\", resource) when { context has rows && context.rows > 5 };",
        CATALOG,
    );
    assert!(
        s.warnings()
            .iter()
            .any(|w| w.message.contains("must be declared")),
        "{:?}",
        s.warnings()
    );
}

#[test]
fn explain_labels_where_each_value_came_from() {
    let s = with_catalog(
        "permit(principal, action, resource) when { resource.environment == \"prod\" };",
        CATALOG,
    );
    let attrs = PrincipalAttributes {
        environments: vec!["staging".into()],
        ..Default::default()
    };
    let e = s.explain(&EvalInput {
        request: &at("customers", Some("staging")),
        principal_groups: &[],
        gate: "exec",
        principal_attributes: &attrs,
    });
    let source = |name: &str| {
        e.facts
            .iter()
            .find(|f| f.name == name)
            .map(|f| (f.value.clone(), f.source.clone()))
            .unwrap()
    };
    assert_eq!(
        source("resource.environment"),
        (
            json!("prod"),
            "catalog (catalog.toml:7, entry `customers`)".to_owned()
        )
    );
    assert_eq!(
        source("principal.environments"),
        (
            json!(["staging"]),
            "principal (registered attributes)".to_owned()
        )
    );
    assert!(source("context.environment").1.starts_with("asserted"));
    assert_eq!(source("context.environment_mismatch").0, json!(true));
    assert_eq!(source("context.gate").1, "credential");
    let text = e.render();
    assert!(
        text.contains("facts (where each value came from):"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("resource.environment")
            && l.contains("\"prod\"")
            && l.contains("catalog")),
        "{text}"
    );
}

/// A rendered explanation without its facts block (tested on its own).
fn without_facts(text: &str) -> String {
    let mut skipping = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("facts (") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("  ") {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}
