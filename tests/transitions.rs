//! Desired versus existing, as a pure function: every transition of a
//! finding's lifecycle (SPEC 2.2, 4, 5).

mod common;

use common::*;
use cronwarden::api::{CronJobFinding, FindingState, Rule};
use cronwarden::controller::plan::{FindingAction, FindingChange, Suspension, plan_finding};
use cronwarden::engine::{CronJobView, DesiredFinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use std::time::Duration;

const WEEK: Duration = Duration::from_secs(7 * 86400);

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn desired(objects: &[serde_json::Value], name: &str) -> (Option<DesiredFinding>, CronJobView) {
    let loaded = load(objects);
    let e = evaluate(objects);
    let d = e.findings.into_iter().find(|f| f.name == name);
    let cj = loaded
        .inventory
        .cronjobs
        .into_iter()
        .find(|c| c.name == name)
        .unwrap();
    (d, cj)
}

/// Apply a change to an existing finding the way the API server would.
fn written(existing: Option<&CronJobFinding>, c: &FindingChange) -> CronJobFinding {
    let mut f = existing
        .cloned()
        .unwrap_or_else(|| CronJobFinding::new(&c.name, Default::default()));
    f.metadata.namespace = Some(c.namespace.clone());
    f.metadata.generation = Some(1);
    if let Some((labels, subject)) = &c.meta {
        f.metadata.labels = Some(labels.clone());
        f.spec.subject = subject.clone();
    }
    if let Some(s) = &c.status {
        f.status = Some(s.clone());
    }
    f
}

fn upsert(a: Option<FindingAction>) -> FindingChange {
    match a {
        Some(FindingAction::Upsert(c)) => *c,
        other => panic!("expected an upsert, got {other:?}"),
    }
}

fn reasons(c: &FindingChange) -> Vec<String> {
    c.events.iter().map(|e| e.reason.clone()).collect()
}

fn governed(objs: &mut Vec<serde_json::Value>) {
    objs.push(baseline(
        "apps",
        "b",
        json!([{"name": "x", "schedules": ["0 2 * * *"], "images": ["registry.example.com/*"]}]),
    ));
}

#[test]
fn open_then_unchanged_then_gain_then_lose_a_rule() {
    let mut objs = vec![with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("0 3 * * *"),
    )];
    governed(&mut objs);
    let (d, cj) = desired(&objs, "x");
    let t0 = t("2026-11-22T08:00:00Z");
    let c = upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false));
    assert_eq!(reasons(&c), vec!["ScheduleNotApproved"]);
    assert!(c.meta.is_some(), "a new finding is created");
    let f1 = written(None, &c);
    let s1 = f1.status.clone().unwrap();
    assert_eq!(s1.first_seen, Some(t0.clone()));

    // Nothing changed: no action at all, whatever the time.
    let t1 = t("2026-11-22T09:00:00Z");
    assert_eq!(
        plan_finding(d.as_ref(), Some(&f1), Some(&cj), &t1, WEEK, false),
        None
    );

    // Gains a rule: one Event, for the new rule only; firstSeen kept.
    let mut objs2 = vec![with(
        with(cronjob("apps", "x"), "/spec/schedule", json!("0 3 * * *")),
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
        json!("ghcr.io/evil/x:1"),
    )];
    governed(&mut objs2);
    let (d2, cj2) = desired(&objs2, "x");
    let c2 = upsert(plan_finding(
        d2.as_ref(),
        Some(&f1),
        Some(&cj2),
        &t1,
        WEEK,
        false,
    ));
    assert_eq!(reasons(&c2), vec!["ImageNotApproved"]);
    let f2 = written(Some(&f1), &c2);
    let s2 = f2.status.clone().unwrap();
    assert_eq!(s2.first_seen, Some(t0.clone()));
    assert_eq!(s2.last_seen, Some(t1.clone()));
    let sched = s2
        .violations
        .iter()
        .find(|v| v.rule == Rule::ScheduleNotApproved)
        .unwrap();
    assert_eq!(
        sched.first_seen,
        Some(t0.clone()),
        "an unchanged violation keeps its times"
    );
    assert_eq!(sched.last_seen, Some(t0.clone()));

    // Loses a rule: no Event (the finding stays open), evidence updated.
    let t2 = t("2026-11-22T10:00:00Z");
    let c3 = upsert(plan_finding(
        d.as_ref(),
        Some(&f2),
        Some(&cj),
        &t2,
        WEEK,
        false,
    ));
    assert!(c3.events.is_empty());
    let s3 = written(Some(&f2), &c3).status.unwrap();
    assert_eq!(s3.rules, "ScheduleNotApproved");
    assert_eq!(s3.last_seen, Some(t2));
    assert_eq!(s3.first_seen, Some(t0));
}

#[test]
fn severity_change_updates_the_label() {
    let mut objs = vec![with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("0 3 * * *"),
    )];
    governed(&mut objs);
    let (d, cj) = desired(&objs, "x");
    let now = t("2026-11-22T08:00:00Z");
    let f1 = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &now, WEEK, false)),
    );
    assert_eq!(
        f1.metadata.labels.as_ref().unwrap()["cronwarden.io/severity"],
        "medium"
    );
    let mut objs2 = vec![with(
        with(cronjob("apps", "x"), "/spec/schedule", json!("0 3 * * *")),
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
        json!("ghcr.io/evil/x:1"),
    )];
    governed(&mut objs2);
    let (d2, cj2) = desired(&objs2, "x");
    let c = upsert(plan_finding(
        d2.as_ref(),
        Some(&f1),
        Some(&cj2),
        &now,
        WEEK,
        false,
    ));
    let (labels, _) = c.meta.expect("label change is applied");
    assert_eq!(labels["cronwarden.io/severity"], "high");
}

#[test]
fn resolve_reasons() {
    let now = t("2026-11-22T08:00:00Z");
    let rogue = with(cronjob("apps", "x"), "/metadata/uid", json!("uid-x"));
    let objs = vec![
        rogue.clone(),
        baseline("apps", "b", json!([{"name": "other"}])),
    ];
    let (d, cj) = desired(&objs, "x");
    let open = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &now, WEEK, false)),
    );

    let approved = upsert(plan_finding(
        None,
        Some(&open),
        Some(&cj),
        &now,
        WEEK,
        false,
    ));
    let active = |c: &FindingChange| c.status.as_ref().unwrap().conditions[0].clone();
    assert_eq!(active(&approved).reason, "Approved");
    assert_eq!(reasons(&approved), vec!["FindingResolved"]);
    assert_eq!(
        approved.status.as_ref().unwrap().state,
        FindingState::Resolved
    );
    assert_eq!(
        approved.status.as_ref().unwrap().resolved_at,
        Some(now.clone())
    );

    let deleted = upsert(plan_finding(None, Some(&open), None, &now, WEEK, false));
    assert_eq!(active(&deleted).reason, "CronJobDeleted");

    // Recreated under the same name: the old CronJob is gone.
    let mut other = cj.clone();
    other.uid = Some("another-uid".into());
    let recreated = upsert(plan_finding(
        None,
        Some(&open),
        Some(&other),
        &now,
        WEEK,
        false,
    ));
    assert_eq!(active(&recreated).reason, "CronJobDeleted");

    // A heuristic that went away: plain Resolved.
    let hp = with(
        cronjob("apps", "y"),
        "/spec/jobTemplate/spec/template/spec/volumes",
        json!([{"name": "h", "hostPath": {"path": "/"}}]),
    );
    let (dh, cjh) = desired(&[hp], "y");
    let open_h = written(
        None,
        &upsert(plan_finding(
            dh.as_ref(),
            None,
            Some(&cjh),
            &now,
            WEEK,
            false,
        )),
    );
    let fixed = upsert(plan_finding(
        None,
        Some(&open_h),
        Some(&cjh),
        &now,
        WEEK,
        false,
    ));
    assert_eq!(active(&fixed).reason, "Resolved");
}

#[test]
fn reopen_after_resolution_emits_again_and_retention_deletes() {
    let t0 = t("2026-11-22T08:00:00Z");
    let objs = vec![
        cronjob("apps", "x"),
        baseline("apps", "b", json!([{"name": "other"}])),
    ];
    let (d, cj) = desired(&objs, "x");
    let open = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false)),
    );
    let resolved = written(
        Some(&open),
        &upsert(plan_finding(None, Some(&open), Some(&cj), &t0, WEEK, false)),
    );
    // Within retention: nothing.
    assert_eq!(
        plan_finding(
            None,
            Some(&resolved),
            Some(&cj),
            &t("2026-11-25T08:00:00Z"),
            WEEK,
            false
        ),
        None
    );
    // Re-opened a minute later: a fresh open, Events for every rule again.
    let t1 = t("2026-11-22T08:01:00Z");
    let re = upsert(plan_finding(
        d.as_ref(),
        Some(&resolved),
        Some(&cj),
        &t1,
        WEEK,
        false,
    ));
    assert_eq!(reasons(&re), vec!["NotInBaseline"]);
    let s = re.status.unwrap();
    assert_eq!(
        (s.state, s.first_seen, s.resolved_at),
        (FindingState::Open, Some(t1), None)
    );
    // After retention: deleted.
    assert!(matches!(
        plan_finding(
            None,
            Some(&resolved),
            Some(&cj),
            &t("2026-11-29T08:00:01Z"),
            WEEK,
            false
        ),
        Some(FindingAction::Delete { .. })
    ));
}

#[test]
fn acknowledgement_is_mirrored_until_it_expires() {
    let t0 = t("2026-11-22T08:00:00Z");
    let objs = vec![
        cronjob("apps", "x"),
        baseline("apps", "b", json!([{"name": "other"}])),
    ];
    let (d, cj) = desired(&objs, "x");
    let mut f = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false)),
    );
    f.spec.acknowledgement = Some(
        serde_json::from_value(
            json!({"by": "alice", "reason": "migration", "expires": "2026-12-01T00:00:00Z"}),
        )
        .unwrap(),
    );
    let ack = |c: &FindingChange| {
        c.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Acknowledged")
            .cloned()
            .unwrap()
    };
    let c = upsert(plan_finding(
        d.as_ref(),
        Some(&f),
        Some(&cj),
        &t0,
        WEEK,
        false,
    ));
    assert!(
        c.events.is_empty(),
        "acknowledging is not a transition worth an Event"
    );
    assert_eq!(
        (ack(&c).status.as_str(), ack(&c).reason.as_str()),
        ("True", "Acknowledged")
    );
    let f = written(Some(&f), &c);
    assert_eq!(
        plan_finding(
            d.as_ref(),
            Some(&f),
            Some(&cj),
            &t("2026-11-30T00:00:00Z"),
            WEEK,
            false
        ),
        None
    );
    let expired = upsert(plan_finding(
        d.as_ref(),
        Some(&f),
        Some(&cj),
        &t("2026-12-01T00:00:01Z"),
        WEEK,
        false,
    ));
    assert_eq!(
        (ack(&expired).status.as_str(), ack(&expired).reason.as_str()),
        ("False", "AcknowledgementExpired")
    );
}

#[test]
fn hand_edits_are_restored() {
    let t0 = t("2026-11-22T08:00:00Z");
    let objs = vec![
        cronjob("apps", "x"),
        baseline("apps", "b", json!([{"name": "other"}])),
    ];
    let (d, cj) = desired(&objs, "x");
    let f = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false)),
    );
    let mut edited = f.clone();
    edited.status.as_mut().unwrap().rules = "nothing".into();
    edited
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cronwarden.io/severity".into(), "info".into());
    let c = upsert(plan_finding(
        d.as_ref(),
        Some(&edited),
        Some(&cj),
        &t0,
        WEEK,
        false,
    ));
    assert_eq!(c.status.as_ref().unwrap().rules, "NotInBaseline");
    assert_eq!(c.meta.as_ref().unwrap().0["cronwarden.io/severity"], "high");
    assert!(c.events.is_empty(), "restoring is not a new detection");
}

#[test]
fn suspension_is_planned_only_with_consent_and_once() {
    let t0 = t("2026-11-22T08:00:00Z");
    let b = with(
        baseline("apps", "b", json!([{"name": "other"}])),
        "/spec/enforcement",
        json!("Suspend"),
    );
    let (d, mut cj) = desired(&[cronjob("apps", "x"), b], "x");
    assert_eq!(
        upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, true)).suspend,
        None,
        "a CronJob whose uid and resourceVersion are unknown is never suspended"
    );
    cj.uid = Some("uid-x".into());
    cj.resource_version = cronwarden::engine::inventory::Untracked(Some("42".into()));
    assert_eq!(
        upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false)).suspend,
        None
    );
    // The preconditions are the CronJob as evaluated.
    assert_eq!(
        upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, true)).suspend,
        Some(Suspension {
            baseline: "apps/b".into(),
            uid: "uid-x".into(),
            resource_version: "42".into(),
        })
    );
    let mut suspended = cj.clone();
    suspended.suspend = Some(true);
    assert_eq!(
        upsert(plan_finding(
            d.as_ref(),
            None,
            Some(&suspended),
            &t0,
            WEEK,
            true
        ))
        .suspend,
        None
    );
}

#[test]
fn an_invalid_baseline_never_leads_to_a_suspension() {
    let t0 = t("2026-11-22T08:00:00Z");
    // One bad entry (an invalid pattern) makes the baseline invalid: it
    // still detects, never enforces (SPEC 6).
    let b = with(
        baseline(
            "apps",
            "b",
            json!([{"name": "other"}, {"namePattern": "[", "schedules": ["* * * * *"]}]),
        ),
        "/spec/enforcement",
        json!("Suspend"),
    );
    let (d, mut cj) = desired(&[cronjob("apps", "x"), b], "x");
    cj.uid = Some("uid-x".into());
    cj.resource_version = cronwarden::engine::inventory::Untracked(Some("42".into()));
    let c = upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, true));
    assert_eq!(c.status.unwrap().rules, "NotInBaseline", "still detected");
    assert_eq!(c.suspend, None);
}

/// Events owed by an earlier transition (their write failed, or the
/// controller died before it) are carried in status.pendingEvents until
/// written; nothing else about the finding needs to change for that.
#[test]
fn pending_events_are_carried_until_delivered_and_block_deletion() {
    use cronwarden::api::PendingEvent;
    let mut objs = vec![cronjob("apps", "x")];
    governed(&mut objs);
    objs[0] = with(cronjob("apps", "x"), "/spec/schedule", json!("0 3 * * *"));
    let (d, cj) = desired(&objs, "x");
    let t0 = t("2026-11-22T08:00:00Z");
    let c = upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false));
    assert!(c.write_status);
    assert_eq!(c.fingerprint, "none");
    let owed = PendingEvent {
        name: "x.0011223344556677".into(),
        type_: "Warning".into(),
        reason: "ScheduleNotApproved".into(),
        action: "Detected".into(),
        note: "[medium] …".into(),
        regarding_uid: None,
    };
    let mut f1 = written(None, &c);
    f1.status.as_mut().unwrap().pending_events = vec![owed.clone()];
    // Same desired state: an action only to deliver the owed Event.
    let t1 = t("2026-11-22T09:00:00Z");
    let c2 = upsert(plan_finding(
        d.as_ref(),
        Some(&f1),
        Some(&cj),
        &t1,
        WEEK,
        false,
    ));
    assert!(!c2.write_status, "the status itself is unchanged");
    assert!(c2.events.is_empty(), "no new transition");
    assert_eq!(
        c2.status.as_ref().unwrap().pending_events,
        vec![owed.clone()]
    );
    // Without the owed Event: nothing to do.
    let f2 = written(None, &c);
    assert_eq!(
        plan_finding(d.as_ref(), Some(&f2), Some(&cj), &t1, WEEK, false),
        None
    );

    // Resolved past retention, but an Event is still owed: delivered first.
    let mut resolved = f1.clone();
    {
        let s = resolved.status.as_mut().unwrap();
        s.state = FindingState::Resolved;
        s.resolved_at = Some(t0.clone());
    }
    let late = t("2026-12-30T00:00:00Z");
    let c3 = upsert(plan_finding(
        None,
        Some(&resolved),
        None,
        &late,
        WEEK,
        false,
    ));
    assert_eq!(c3.status.unwrap().pending_events, vec![owed]);
    resolved.status.as_mut().unwrap().pending_events.clear();
    assert!(matches!(
        plan_finding(None, Some(&resolved), None, &late, WEEK, false),
        Some(FindingAction::Delete { .. })
    ));
}

/// An Event's name is fixed by the transition: the same finding, starting
/// status and reason always give the same name (so a retry finds it, 409),
/// any other transition another one; names are valid object names.
#[test]
fn event_names_are_fixed_by_the_transition() {
    use cronwarden::controller::plan::{event_name, fingerprint};
    let mut objs = vec![with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("0 3 * * *"),
    )];
    governed(&mut objs);
    let (d, cj) = desired(&objs, "x");
    let t0 = t("2026-11-22T08:00:00Z");
    let f = written(
        None,
        &upsert(plan_finding(d.as_ref(), None, Some(&cj), &t0, WEEK, false)),
    );
    let s = f.status.as_ref();
    assert_eq!(fingerprint(s), fingerprint(s));
    // Read back from the server (JSON round trip): the same fingerprint.
    let back: cronwarden::api::CronJobFindingStatus =
        serde_json::from_value(serde_json::to_value(s.unwrap()).unwrap()).unwrap();
    assert_eq!(fingerprint(Some(&back)), fingerprint(s));
    assert_ne!(
        fingerprint(s),
        fingerprint::<cronwarden::api::CronJobFindingStatus>(None)
    );
    let a = event_name("x", "uid-1", &fingerprint(s), "ImageNotApproved");
    assert_eq!(
        a,
        event_name("x", "uid-1", &fingerprint(s), "ImageNotApproved")
    );
    assert_ne!(
        a,
        event_name("x", "uid-2", &fingerprint(s), "ImageNotApproved")
    );
    assert_ne!(a, event_name("x", "uid-1", "none", "ImageNotApproved"));
    assert_ne!(
        a,
        event_name("x", "uid-1", &fingerprint(s), "FindingResolved")
    );
    let long = format!("job.{}", "a".repeat(249));
    let n = event_name(&long, "u", "none", "ManualJobRun");
    assert!(n.len() <= 253, "{}", n.len());
    assert!(!n.contains(".."), "{n}");
    let odd = format!("{}-.b", "a".repeat(234));
    let n = event_name(&odd, "u", "none", "R");
    assert!(n.len() <= 253 && !n.contains("-."), "{n}");
}

/// A CronJob with a HighFrequencySchedule violation.
fn frequent(schedule: &str) -> serde_json::Value {
    with(cronjob("apps", "x"), "/spec/schedule", json!(schedule))
}

fn actor(user: &str) -> cronwarden::api::Actor {
    cronwarden::api::Actor {
        user: user.into(),
        groups: vec!["system:authenticated".into()],
        source_ips: vec!["10.0.3.7".into()],
        user_agent: Some("kubectl/v1.36.2 (linux/amd64) kubernetes/abcdef".into()),
        verb: "create".into(),
        audit_id: Some("a1".into()),
        ..Default::default()
    }
}

#[test]
fn the_actor_is_on_the_finding_and_ends_the_event_note() {
    let (d, cj) = desired(&[frequent("* * * * *")], "x");
    let mut d = d.unwrap();
    d.actor = Some(actor("alice"));
    let t0 = t("2026-11-22T08:00:00Z");
    let c = upsert(plan_finding(Some(&d), None, Some(&cj), &t0, WEEK, false));
    let status = c.status.as_ref().unwrap();
    assert_eq!(status.actor.as_ref().unwrap().user, "alice");
    for e in &c.events {
        assert!(
            e.note
                .ends_with(" by alice from 10.0.3.7 (kubectl/v1.36.2)"),
            "{}",
            e.note
        );
    }
}

#[test]
fn an_actor_arriving_late_is_one_status_write_and_no_event() {
    let (d, cj) = desired(&[frequent("* * * * *")], "x");
    let mut d = d.unwrap();
    let t0 = t("2026-11-22T08:00:00Z");
    let c = upsert(plan_finding(Some(&d), None, Some(&cj), &t0, WEEK, false));
    assert!(!c.events.is_empty());
    assert!(c.status.as_ref().unwrap().actor.is_none());
    let f = written(None, &c);
    // The audit event lands a second later.
    d.actor = Some(actor("mallory"));
    let t1 = t("2026-11-22T08:00:01Z");
    let c = upsert(plan_finding(
        Some(&d),
        Some(&f),
        Some(&cj),
        &t1,
        WEEK,
        false,
    ));
    assert!(c.events.is_empty(), "{:?}", reasons(&c));
    assert!(c.meta.is_none());
    assert_eq!(
        c.status.as_ref().unwrap().actor.as_ref().unwrap().user,
        "mallory"
    );
    let f = written(Some(&f), &c);
    // The audit window forgot the write; the evidence stands: kept, no write.
    d.actor = None;
    assert!(plan_finding(Some(&d), Some(&f), Some(&cj), &t1, WEEK, false).is_none());
}

#[test]
fn new_evidence_without_its_write_names_nobody() {
    let (d, cj) = desired(&[frequent("* * * * *")], "x");
    let mut d = d.unwrap();
    d.actor = Some(actor("alice"));
    let t0 = t("2026-11-22T08:00:00Z");
    let f = written(
        None,
        &upsert(plan_finding(Some(&d), None, Some(&cj), &t0, WEEK, false)),
    );
    // Someone changed the schedule; their audit event is not in yet.
    let (d2, cj2) = desired(&[frequent("*/2 * * * *")], "x");
    let d2 = d2.unwrap();
    assert!(d2.actor.is_none());
    let c = upsert(plan_finding(
        Some(&d2),
        Some(&f),
        Some(&cj2),
        &t0,
        WEEK,
        false,
    ));
    assert!(
        c.status.as_ref().unwrap().actor.is_none(),
        "alice must not be blamed for a change she did not make"
    );
}
