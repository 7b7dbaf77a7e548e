use cedar_policy::*;
use std::str::FromStr;
use std::time::Instant;
use std::collections::HashSet;
fn main() {
    let n = 200_000;
    let agent = EntityTypeName::from_str("Agent").unwrap();
    let action_t = EntityTypeName::from_str("Action").unwrap();
    let group = EntityTypeName::from_str("Group").unwrap();
    let res_t = EntityTypeName::from_str("Resource").unwrap();
    let pset = PolicySet::from_str(r#"permit(principal is Agent, action == Action::"svc1.op3", resource == Resource::"r1") when { context.environment == "prod" && context has rows && context.rows < 1000 };
    forbid(principal, action, resource) when { context.environment == "prod" && context.justification == "" };"#).unwrap();
    let ctxv = serde_json::json!({"rows": 10, "format": "csv", "table": "customers", "environment": "prod", "justification": "x", "gate": "exec", "on_behalf_of": "carol"});
    let auth = Authorizer::new();

    let t = Instant::now();
    for _ in 0..n { let p = EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot")); std::hint::black_box(p); }
    println!("uid: {:?}", t.elapsed() / n);

    let mk_entities = || {
        let p = EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot"));
        let g: HashSet<_> = ["sre", "data"].iter().map(|g| EntityUid::from_type_name_and_id(group.clone(), EntityId::new(g))).collect();
        let a = EntityUid::from_type_name_and_id(action_t.clone(), EntityId::new("svc1.op3"));
        let a1 = EntityUid::from_type_name_and_id(action_t.clone(), EntityId::new("svc1"));
        Entities::from_entities([Entity::new_no_attrs(p, g), Entity::new_no_attrs(a, [a1.clone()].into()), Entity::new_no_attrs(a1, HashSet::new())], None).unwrap()
    };
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(mk_entities()); }
    println!("entities: {:?}", t.elapsed() / n);

    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Entities::empty()); }
    println!("entities empty: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let p = EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot"));
        std::hint::black_box(Entities::from_entities([Entity::new_no_attrs(p, HashSet::new())], None).unwrap()); }
    println!("entities 1: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let p = EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot"));
        let g: HashSet<_> = ["sre", "data"].iter().map(|g| EntityUid::from_type_name_and_id(group.clone(), EntityId::new(g))).collect();
        std::hint::black_box(Entities::from_entities([Entity::new_no_attrs(p, g)], None).unwrap()); }
    println!("entities 1+2 parents: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let p = EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot"));
        let g: HashSet<_> = ["sre", "data"].iter().map(|g| EntityUid::from_type_name_and_id(group.clone(), EntityId::new(g))).collect();
        std::hint::black_box(Entity::new_no_attrs(p, g)); }
    println!("entity only: {:?}", t.elapsed() / n);

    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Context::from_json_value(ctxv.clone(), None).unwrap()); }
    println!("context json: {:?}", t.elapsed() / n);

    let t = Instant::now();
    for _ in 0..n {
        let c = Context::from_pairs([
            ("rows".to_string(), RestrictedExpression::new_long(10)),
            ("format".to_string(), RestrictedExpression::new_string("csv".into())),
            ("table".to_string(), RestrictedExpression::new_string("customers".into())),
            ("environment".to_string(), RestrictedExpression::new_string("prod".into())),
            ("justification".to_string(), RestrictedExpression::new_string("x".into())),
            ("gate".to_string(), RestrictedExpression::new_string("exec".into())),
            ("on_behalf_of".to_string(), RestrictedExpression::new_string("carol".into())),
        ]).unwrap();
        std::hint::black_box(c);
    }
    println!("context pairs: {:?}", t.elapsed() / n);

    let ents = mk_entities();
    let ctx = Context::from_json_value(ctxv.clone(), None).unwrap();
    let req = Request::new(EntityUid::from_type_name_and_id(agent.clone(), EntityId::new("etl-bot")), EntityUid::from_type_name_and_id(action_t.clone(), EntityId::new("svc1.op3")), EntityUid::from_type_name_and_id(res_t.clone(), EntityId::new("r1")), ctx, None).unwrap();
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(auth.is_authorized(&req, &pset, &ents)); }
    println!("authorize: {:?} {:?}", t.elapsed() / n, auth.is_authorized(&req, &pset, &ents).decision());
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(Authorizer::new()); }
    println!("authorizer new: {:?}", t.elapsed() / n);
}
