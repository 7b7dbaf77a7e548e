use super::*;
use crate::quorum::Requirement;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn t0() -> Timestamp {
    ts("2026-11-23T10:00:00Z")
}

fn verdict(decision: Decision, requirement: Option<&str>) -> Verdict {
    Verdict {
        decision,
        policy_ids: vec!["p1".into()],
        policy_set_hash: "h".into(),
        requirement: requirement.map(|r| r.parse::<Requirement>().unwrap()),
        ttl_seconds: Some(1800),
        reasons: vec![],
        errors: vec![],
    }
}

fn action() -> ActionRequest {
    ActionRequest {
        action: "db.export".into(),
        resource: "customers".into(),
        environment: Some("prod".into()),
        context: json!({"rows": 5}).as_object().cloned().unwrap(),
        justification: Some("report".into()),
        principal: "agent:etl".parse().unwrap(),
        on_behalf_of: Some("carol".into()),
    }
}

fn pending(req: &str) -> RequestRecord {
    RequestRecord::submit(
        Submission {
            id: "r1".into(),
            action: action(),
            gate: Some("exec".into()),
            claimed_gate: None,
            principal_owner: Some("olga".into()),
            principal_created_by: None,
            verdict: verdict(Decision::ApprovalRequired, Some(req)),
            idempotency_key: None,
            facts: None,
        },
        t0(),
        Deadlines::default(),
    )
    .0
}

fn user(name: &str, groups: &[&str]) -> Reviewer {
    Reviewer {
        name: name.into(),
        kind: PrincipalKind::User,
        role: Role::Reviewer,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        channel: crate::Channel::Cli,
        provenance: Default::default(),
    }
}

fn approve(
    r: &mut RequestRecord,
    who: &Reviewer,
) -> Result<Vec<AuditEvent>, (ReviewRefusal, Box<AuditEvent>)> {
    r.review(
        who,
        ReviewDecision::Approve,
        None,
        t0(),
        Deadlines::default(),
    )
}

#[test]
fn submission_sets_status_and_deadline_from_verdict() {
    let r = pending("sre:2");
    assert_eq!(r.status, RequestStatus::Pending);
    assert_eq!(r.expires_at, Some(ts("2026-11-23T10:30:00Z")));
    let (allowed, ev) = RequestRecord::submit(
        Submission {
            id: "r2".into(),
            action: action(),
            gate: None,
            claimed_gate: None,
            principal_owner: None,
            principal_created_by: None,
            verdict: verdict(Decision::Allow, None),
            idempotency_key: None,
            facts: None,
        },
        t0(),
        Deadlines::default(),
    );
    assert_eq!(allowed.status, RequestStatus::Approved);
    assert_eq!(allowed.expires_at, None);
    assert_eq!(ev.kind, EventKind::RequestSubmitted);
    assert_eq!(ev.digest.as_deref(), Some(allowed.digest.0.as_str()));
}

#[test]
fn two_distinct_approvers_approve() {
    let mut r = pending("sre:2");
    let ev = approve(&mut r, &user("alice", &["sre"])).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(r.status, RequestStatus::Pending);
    let (refusal, ev) = approve(&mut r, &user("alice", &["sre"])).unwrap_err();
    assert_eq!(
        refusal,
        ReviewRefusal::AlreadyReviewed {
            name: "alice".into()
        }
    );
    assert_eq!(ev.kind, EventKind::ReviewRefused);
    let ev = approve(&mut r, &user("bob", &["sre"])).unwrap();
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::ReviewRecorded, EventKind::RequestApproved]
    );
    assert_eq!(r.status, RequestStatus::Approved);
    assert_eq!(r.expires_at, Some(ts("2026-11-23T10:15:00Z")));
}

#[test]
fn separation_of_duties_has_no_exceptions() {
    let mut r = pending("sre:1");
    let mut admin = user("carol", &["sre"]);
    admin.role = Role::Admin;
    let (refusal, ev) = approve(&mut r, &admin).unwrap_err();
    assert_eq!(
        refusal,
        ReviewRefusal::SelfReview {
            name: "carol".into(),
            relation: SelfRelation::OnBehalfOf
        }
    );
    assert_eq!(
        ev.reason.as_deref(),
        Some("carol cannot review this request: it is on their behalf")
    );
    let (refusal, _) = approve(&mut r, &user("olga", &["sre"])).unwrap_err();
    assert_eq!(
        refusal,
        ReviewRefusal::SelfReview {
            name: "olga".into(),
            relation: SelfRelation::AgentOwner
        }
    );
    // deny by a self-related human is refused too
    let err = r.review(
        &user("olga", &["sre"]),
        ReviewDecision::Deny,
        None,
        t0(),
        Deadlines::default(),
    );
    assert!(err.is_err());
    // a user principal cannot approve their own request
    let mut own = pending("sre:1");
    own.action.principal = "user:dave".parse().unwrap();
    let (refusal, _) = approve(&mut own, &user("dave", &["sre"])).unwrap_err();
    assert_eq!(
        refusal,
        ReviewRefusal::SelfReview {
            name: "dave".into(),
            relation: SelfRelation::Principal
        }
    );
    assert_eq!(r.status, RequestStatus::Pending);
    assert!(r.reviews.is_empty());
}

#[test]
fn agents_and_auditors_never_review() {
    let mut r = pending("sre:1");
    let agent = Reviewer {
        name: "bot".into(),
        kind: PrincipalKind::Agent,
        role: Role::Agent,
        groups: vec!["sre".into()],
        channel: crate::Channel::Cli,
        provenance: Default::default(),
    };
    assert!(matches!(
        approve(&mut r, &agent).unwrap_err().0,
        ReviewRefusal::Agent { .. }
    ));
    let mut auditor = user("audrey", &["sre"]);
    auditor.role = Role::Auditor;
    assert!(matches!(
        approve(&mut r, &auditor).unwrap_err().0,
        ReviewRefusal::Role { .. }
    ));
}

#[test]
fn reviewer_outside_required_groups_is_refused_but_admin_may_deny() {
    let mut r = pending("sre:1");
    let (refusal, _) = approve(&mut r, &user("dan", &["dba"])).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "dan is in none of the groups this request needs (sre)"
    );
    let mut admin = user("root", &[]);
    admin.role = Role::Admin;
    assert!(matches!(
        approve(&mut r, &admin).unwrap_err().0,
        ReviewRefusal::NotInRequiredGroup { .. }
    ));
    r.review(
        &admin,
        ReviewDecision::Deny,
        Some("no".into()),
        t0(),
        Deadlines::default(),
    )
    .unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
}

#[test]
fn any_deny_ends_it_and_later_reviews_are_refused() {
    let mut r = pending("sre:2");
    approve(&mut r, &user("alice", &["sre"])).unwrap();
    let ev = r
        .review(
            &user("bob", &["sre"]),
            ReviewDecision::Deny,
            Some("too big".into()),
            t0(),
            Deadlines::default(),
        )
        .unwrap();
    assert_eq!(ev.last().unwrap().kind, EventKind::RequestDenied);
    assert_eq!(r.status_reason.as_deref(), Some("denied by bob: too big"));
    let (refusal, _) = approve(&mut r, &user("eve", &["sre"])).unwrap_err();
    assert_eq!(
        refusal,
        ReviewRefusal::NotPending {
            status: RequestStatus::Denied
        }
    );
}

#[test]
fn expiry_and_lapse() {
    let mut r = pending("sre:1");
    assert!(r.expire_if_due(ts("2026-11-23T10:29:59Z")).is_empty());
    let late = ts("2026-11-23T10:30:00Z");
    let (refusal, _) = r
        .review(
            &user("a", &["sre"]),
            ReviewDecision::Approve,
            None,
            late,
            Deadlines::default(),
        )
        .unwrap_err();
    assert!(matches!(refusal, ReviewRefusal::Expired { .. }));
    let ev = r.expire_if_due(late);
    assert_eq!(ev[0].kind, EventKind::RequestExpired);
    assert_eq!(r.status, RequestStatus::Expired);
    assert!(r.expire_if_due(late).is_empty());

    let mut r = pending("sre:1");
    approve(&mut r, &user("a", &["sre"])).unwrap();
    let ev = r.expire_if_due(ts("2026-11-23T10:15:00Z"));
    assert_eq!(ev[0].kind, EventKind::ApprovalLapsed);
    assert_eq!(r.status, RequestStatus::Lapsed);
}

#[test]
fn claim_is_bound_to_digest_and_single_use() {
    let mut r = pending("sre:1");
    approve(&mut r, &user("a", &["sre"])).unwrap();
    let agent: PrincipalRef = "agent:etl".parse().unwrap();
    let recheck = verdict(Decision::ApprovalRequired, Some("sre:1"));
    let mut other = action();
    other.resource = "payments".into();
    let (refusal, ev) = r
        .claim(
            &agent,
            &other.digest(),
            recheck.clone(),
            t0(),
            Deadlines::default(),
        )
        .unwrap_err();
    assert!(matches!(refusal, ClaimRefusal::DigestMismatch { .. }));
    assert_eq!(ev[0].kind, EventKind::ClaimRefused);
    assert_eq!(r.status, RequestStatus::Approved);
    let intruder: PrincipalRef = "agent:other".parse().unwrap();
    assert!(matches!(
        r.claim(
            &intruder,
            &r.digest.clone(),
            recheck.clone(),
            t0(),
            Deadlines::default()
        )
        .unwrap_err()
        .0,
        ClaimRefusal::NotRequester { .. }
    ));
    let digest = r.digest.clone();
    r.claim(&agent, &digest, recheck.clone(), t0(), Deadlines::default())
        .unwrap();
    assert_eq!(r.status, RequestStatus::Executing);
    let (refusal, _) = r
        .claim(&agent, &digest, recheck, t0(), Deadlines::default())
        .unwrap_err();
    assert_eq!(
        refusal,
        ClaimRefusal::NotApproved {
            status: RequestStatus::Executing
        }
    );
}

#[test]
fn claim_rechecks_policy() {
    let agent: PrincipalRef = "agent:etl".parse().unwrap();
    let mut r = pending("sre:1");
    approve(&mut r, &user("a", &["sre"])).unwrap();
    let digest = r.digest.clone();
    let (refusal, ev) = r
        .claim(
            &agent,
            &digest,
            verdict(Decision::ApprovalRequired, Some("sre:2")),
            t0(),
            Deadlines::default(),
        )
        .unwrap_err();
    assert_eq!(refusal, ClaimRefusal::PolicyNeedsMore("sre:2".into()));
    assert_eq!(ev.last().unwrap().kind, EventKind::RequirementChanged);
    assert_eq!(r.status, RequestStatus::Pending);
    approve(&mut r, &user("b", &["sre"])).unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let (refusal, _) = r
        .claim(
            &agent,
            &digest,
            verdict(Decision::Deny, None),
            t0(),
            Deadlines::default(),
        )
        .unwrap_err();
    assert!(matches!(refusal, ClaimRefusal::PolicyNowDenies(_)));
    assert_eq!(r.status, RequestStatus::Denied);
}

#[test]
fn claim_after_window_lapses() {
    let agent: PrincipalRef = "agent:etl".parse().unwrap();
    let mut r = pending("sre:1");
    approve(&mut r, &user("a", &["sre"])).unwrap();
    let digest = r.digest.clone();
    let late = ts("2026-11-23T11:00:00Z");
    let (refusal, ev) = r
        .claim(
            &agent,
            &digest,
            verdict(Decision::Allow, None),
            late,
            Deadlines::default(),
        )
        .unwrap_err();
    assert!(matches!(refusal, ClaimRefusal::Lapsed { .. }));
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::ApprovalLapsed, EventKind::ClaimRefused]
    );
    assert_eq!(r.status, RequestStatus::Lapsed);
}

#[test]
fn outcome_and_cancel_rules() {
    let agent: PrincipalRef = "agent:etl".parse().unwrap();
    let mut r = pending("sre:1");
    let stranger: PrincipalRef = "user:mallory".parse().unwrap();
    assert!(r.cancel(&stranger, false, None, t0()).is_err());
    let outcome = Outcome {
        exit_code: Some(0),
        signal: None,
        duration_ms: 3,
        output_sha256: None,
        summary: None,
        reported_at: t0(),
    };
    assert_eq!(
        r.record_outcome(&agent, outcome.clone()).unwrap_err(),
        TransitionRefusal::WrongStatus(RequestStatus::Pending)
    );
    approve(&mut r, &user("a", &["sre"])).unwrap();
    let digest = r.digest.clone();
    r.claim(
        &agent,
        &digest,
        verdict(Decision::Allow, None),
        t0(),
        Deadlines::default(),
    )
    .unwrap();
    assert!(r.cancel(&agent, false, None, t0()).is_err());
    assert!(r.record_outcome(&stranger, outcome.clone()).is_err());
    r.record_outcome(&agent, outcome).unwrap();
    assert_eq!(r.status, RequestStatus::Executed);

    let mut r = pending("sre:1");
    r.cancel(&agent, false, Some("not needed".into()), t0())
        .unwrap();
    assert_eq!(r.status, RequestStatus::Cancelled);
}

fn provisioned(name: &str, groups: &[&str], account: &str, credential: &str) -> Reviewer {
    let mut r = user(name, groups);
    let by = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    r.provenance = Provenance::new(by(account), by(credential), &r.groups);
    r
}

#[test]
fn reviewer_power_minted_by_a_party_does_not_count() {
    // olga owns the agent, carol is the on-behalf-of human
    for (reviewer, what, by, relation) in [
        (
            provisioned("h1", &["sre"], "user:olga", ""),
            Provisioned::Account,
            "user:olga",
            SelfRelation::AgentOwner,
        ),
        (
            provisioned("h2", &["sre"], "console", "user:Carol"),
            Provisioned::Credential,
            "user:Carol",
            SelfRelation::OnBehalfOf,
        ),
    ] {
        let mut r = pending("sre:1");
        let (refusal, event) = approve(&mut r, &reviewer).unwrap_err();
        assert_eq!(
            refusal,
            ReviewRefusal::ProvisionedByParty {
                name: reviewer.name.clone(),
                what: what.clone(),
                by: by.to_owned(),
                relation,
            }
        );
        assert_eq!(event.kind, EventKind::ReviewRefused);
        assert_eq!(event.detail["provisioned"]["relation"], json!(relation));
        assert!(r.reviews.is_empty());
        assert_eq!(r.status, RequestStatus::Pending);
    }
    let mut r = pending("sre:1");
    let (refusal, _) = approve(&mut r, &provisioned("h1", &["sre"], "user:olga", "")).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "h1 cannot approve this request: their account was provisioned by user:olga, who owns the requesting agent; reviewer power cannot come from a party to the request"
    );
}

#[test]
fn only_qualifying_memberships_and_parties_matter() {
    // the membership olga granted is in a group this request does not need
    let mut r = pending("sre:1");
    let mut who = user("h3", &["sre", "db"]);
    who.provenance = Provenance {
        account: Some("console".into()),
        credential: Some("user:root".into()),
        memberships: vec![
            ("sre".into(), Some("user:root".into())),
            ("db".into(), Some("user:olga".into())),
        ],
    };
    assert!(approve(&mut r, &who).is_ok());
    // a membership that qualifies, granted by the owner, does not count
    let mut r = pending("db:1");
    let (refusal, _) = approve(&mut r, &who).unwrap_err();
    assert!(matches!(
        refusal,
        ReviewRefusal::ProvisionedByParty { what: Provisioned::Membership(ref g), .. } if g == "db"
    ));
    // denials only stop an action: they stay possible
    let mut r = pending("sre:1");
    let denier = provisioned("h1", &["sre"], "user:olga", "");
    r.review(
        &denier,
        ReviewDecision::Deny,
        Some("no".into()),
        t0(),
        Deadlines::default(),
    )
    .unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
}

#[test]
fn the_creator_of_an_agent_is_tied_like_its_owner() {
    let mut r = RequestRecord::submit(
        Submission {
            id: "r9".into(),
            action: action(),
            gate: None,
            claimed_gate: None,
            principal_owner: Some("bob".into()),
            principal_created_by: Some("user:dave".into()),
            verdict: verdict(Decision::ApprovalRequired, Some("sre:1")),
            idempotency_key: None,
            facts: None,
        },
        t0(),
        Deadlines::default(),
    )
    .0;
    assert_eq!(r.self_relation("DAVE"), Some(SelfRelation::AgentCreator));
    let (refusal, _) = approve(&mut r, &user("dave", &["sre"])).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "dave cannot review this request: they created the requesting agent"
    );
    // and whoever dave provisioned cannot approve it either
    let (refusal, _) = approve(&mut r, &provisioned("h4", &["sre"], "user:dave", "")).unwrap_err();
    assert!(matches!(
        refusal,
        ReviewRefusal::ProvisionedByParty {
            relation: SelfRelation::AgentCreator,
            ..
        }
    ));
    // the console operator is nobody's party
    assert!(approve(&mut r, &provisioned("h5", &["sre"], "console", "console")).is_ok());
    // a user's own request: the creator of a *user* is not tied
    let mut user_req = pending("sre:1");
    user_req.action.principal = "user:erin".parse().unwrap();
    user_req.principal_created_by = Some("user:frank".into());
    assert_eq!(user_req.self_relation("frank"), None);
}
