//! Jobs and lineage (SPEC 3.6) as pure functions, over a Job and its
//! CronJob as kube-apiserver served them (`kubectl create job
//! --from=cronjob/…`, from the audit capture in tests/fixtures/audit).

mod common;

use common::*;
use cronwarden::api::{Rule, Severity};
use cronwarden::controller::observe::index::JobItem;
use cronwarden::controller::plan::{FindingAction, plan_finding};
use cronwarden::engine::jobs::{JobView, Lineage, TemplateHistory, lineage};
use cronwarden::engine::{CronJobView, Engine, Settings};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

/// Response objects of the capture: line 5 is the CronJob `sa-made` as
/// stored after its last spec write, line 6 the Job `manual-1` created
/// from it by `kubectl create job --from`.
fn served(line: usize) -> Value {
    let text = std::fs::read_to_string("tests/fixtures/audit/requestresponse.jsonl").unwrap();
    let ev: Value = serde_json::from_str(text.lines().nth(line - 1).unwrap()).unwrap();
    ev["responseObject"].clone()
}

fn cronjob_view() -> CronJobView {
    CronJobView::from(serde_json::from_value::<CronJob>(served(5)).unwrap())
}

fn job(edit: impl FnOnce(&mut Value)) -> JobView {
    let mut v = served(6);
    edit(&mut v);
    JobView::from(serde_json::from_value::<Job>(v).unwrap())
}

fn engine() -> Engine {
    Engine::new(Settings::default()).unwrap()
}

fn rules_of(j: &JobView, l: &Lineage) -> Vec<(Rule, Severity)> {
    engine()
        .evaluate_claimed_job(j, l)
        .map(|f| f.violations.iter().map(|v| (v.rule, v.severity)).collect())
        .unwrap_or_default()
}

fn unannotated(v: &mut Value) {
    v["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("cronjob.kubernetes.io/instantiate");
}

#[test]
fn a_manual_run_of_the_real_template_is_only_manual() {
    let cj = cronjob_view();
    let j = job(|_| {});
    assert!(j.manual);
    assert_eq!(j.claim.as_ref().unwrap().cronjob, "sa-made");
    let l = lineage(&j, Some(&cj), None, true);
    assert_eq!(
        l,
        Lineage::Claimed {
            manual: true,
            forged: vec![]
        }
    );
    assert_eq!(rules_of(&j, &l), vec![(Rule::ManualJobRun, Severity::Low)]);
    let f = engine().evaluate_claimed_job(&j, &l).unwrap();
    assert_eq!(f.name, "job.manual-1");
    assert_eq!(
        (f.subject.kind.as_str(), f.subject.name.as_str()),
        ("Job", "manual-1")
    );
}

#[test]
fn the_cronjobs_own_job_is_covered() {
    let cj = cronjob_view();
    let j = job(unannotated);
    assert_eq!(lineage(&j, Some(&cj), None, true), Lineage::Covered);
}

#[test]
fn another_template_under_the_right_owner_is_forged() {
    let cj = cronjob_view();
    let j = job(|v| {
        unannotated(v);
        v["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("evil.example.com/miner:latest");
    });
    let l = lineage(&j, Some(&cj), None, true);
    let r = rules_of(&j, &l);
    assert!(
        r.contains(&(Rule::ForgedJobLineage, Severity::High)),
        "{r:?}"
    );
    // The heuristics speak too: a `latest` tag.
    assert!(
        r.iter().any(|(x, _)| *x == Rule::MutableImageReference),
        "{r:?}"
    );
    // Only the security-relevant template counts: a label is not a forgery.
    let j = job(|v| {
        unannotated(v);
        v["spec"]["template"]["metadata"]["labels"]["extra"] = json!("x");
    });
    assert_eq!(lineage(&j, Some(&cj), None, true), Lineage::Covered);
}

#[test]
fn a_uid_not_the_cronjobs_or_a_cronjob_that_does_not_exist_is_forged() {
    let cj = cronjob_view();
    let j = job(|v| {
        unannotated(v);
        v["metadata"]["ownerReferences"][0]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    });
    let Lineage::Claimed { forged, .. } = lineage(&j, Some(&cj), None, true) else {
        panic!("not claimed");
    };
    assert_eq!(forged.len(), 1);
    assert!(forged[0].message.contains("uid"), "{:?}", forged[0]);
    let j = job(unannotated);
    let Lineage::Claimed { forged, .. } = lineage(&j, None, None, true) else {
        panic!("not claimed");
    };
    assert!(forged[0].message.contains("no such CronJob"));
    // Offline a CronJob missing from the input is unknown, not absent:
    // the heuristics only.
    assert_eq!(
        lineage(&j, None, None, false),
        Lineage::Claimed {
            manual: false,
            forged: vec![]
        }
    );
}

#[test]
fn a_template_the_cronjob_had_before_is_not_a_forgery() {
    let old = job(unannotated);
    // The CronJob's template changes after the Job was made.
    let mut changed = served(5);
    changed["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example.com/changed:2");
    let cj = CronJobView::from(serde_json::from_value::<CronJob>(changed).unwrap());
    let t = |s: &str| Time(s.parse().unwrap());
    // Seen by this controller: the old template is in the history.
    let mut h = TemplateHistory::default();
    assert_ne!(old.template_hash, cj.pod.as_ref().unwrap().template_hash);
    h.observe(&old.template_hash, None, &t("2026-12-03T08:00:00Z"));
    h.observe(
        &cj.pod.as_ref().unwrap().template_hash,
        None,
        &t("2099-01-01T00:00:00Z"),
    );
    assert_eq!(lineage(&old, Some(&cj), Some(&h), true), Lineage::Covered);
    // Not seen (controller started later), but the Job predates the
    // template: it cannot be checked, and is not reported.
    let mut late = TemplateHistory::default();
    late.observe(
        &cj.pod.as_ref().unwrap().template_hash,
        Some(t("2099-01-01T00:00:00Z")),
        &t("2099-01-01T00:00:00Z"),
    );
    assert_eq!(
        lineage(&old, Some(&cj), Some(&late), true),
        Lineage::Covered
    );
    // Made after the current template took effect, with another one: forged.
    let mut early = TemplateHistory::default();
    early.observe(
        &cj.pod.as_ref().unwrap().template_hash,
        Some(t("2000-01-01T00:00:00Z")),
        &t("2000-01-01T00:00:00Z"),
    );
    assert!(
        matches!(lineage(&old, Some(&cj), Some(&early), true), Lineage::Claimed { ref forged, .. } if forged.len() == 1)
    );
    // The history is bounded.
    let mut h = TemplateHistory::default();
    for i in 0..10 {
        h.observe(&format!("sha256:{i}"), None, &t("2026-12-03T08:00:00Z"));
    }
    assert_eq!(h.entries.len(), cronwarden::engine::jobs::HISTORY);
}

#[test]
fn a_standalone_job_gets_the_heuristics_with_its_own_fields() {
    let j = job(|v| {
        v["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        unannotated(v);
        v["spec"]["template"]["spec"]["hostPID"] = json!(true);
    });
    let l = lineage(&j, None, None, true);
    assert_eq!(l, Lineage::Standalone);
    let f = engine().evaluate_claimed_job(&j, &l).unwrap();
    let v = &f.violations[0];
    assert_eq!(v.rule, Rule::PrivilegedJobTemplate);
    assert!(
        v.field
            .as_deref()
            .unwrap()
            .starts_with("spec.template.spec"),
        "{:?}",
        v.field
    );
    // A plain standalone Job: nothing to say.
    let j = job(|v| {
        v["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        unannotated(v);
    });
    assert!(
        engine()
            .evaluate_claimed_job(&j, &Lineage::Standalone)
            .is_none()
    );
}

#[test]
fn scan_reads_jobs_and_checks_them_against_cronjobs_in_the_input() {
    let mut forged = served(6);
    unannotated(&mut forged);
    forged["metadata"]["name"] = json!("sa-made-forged");
    forged["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example.com/x:1");
    let objs = vec![served(5), served(6), forged];
    let loaded = load(&objs);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.inventory.jobs.len(), 2);
    let e = evaluate(&objs);
    let names: Vec<(&str, Vec<Rule>)> = e
        .findings
        .iter()
        .map(|f| (f.name.as_str(), f.rules()))
        .collect();
    assert!(
        names.contains(&("job.manual-1", vec![Rule::ManualJobRun])),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|(n, r)| *n == "job.sa-made-forged" && r.contains(&Rule::ForgedJobLineage)),
        "{names:?}"
    );
    // A Job with no spec.template is bad input, named.
    let mut broken = served(6);
    broken["spec"].as_object_mut().unwrap().remove("template");
    let mut l = cronwarden::manifest::Loaded::default();
    l.add_text("jobs.yaml", &serde_json::to_string(&broken).unwrap());
    assert_eq!(l.errors.len(), 1);
    assert!(
        l.errors[0].to_string().contains("spec.template"),
        "{}",
        l.errors[0]
    );
}

#[test]
fn a_job_finding_speaks_of_the_job_and_resolves_when_it_is_deleted() {
    let j = job(|_| {});
    let l = lineage(&j, Some(&cronjob_view()), None, true);
    let d = engine().evaluate_claimed_job(&j, &l).unwrap();
    let t0 = Time("2026-12-03T08:00:00Z".parse().unwrap());
    let live = CronJobView {
        uid: j.uid.clone(),
        ..Default::default()
    };
    let week = std::time::Duration::from_secs(7 * 86400);
    let Some(FindingAction::Upsert(c)) =
        plan_finding(Some(&d), None, Some(&live), &t0, week, false)
    else {
        panic!("no upsert");
    };
    let e = &c.events[0];
    assert_eq!(e.reason, "ManualJobRun");
    assert_eq!(e.regarding.kind.as_deref(), Some("Job"));
    assert_eq!(e.regarding.name.as_deref(), Some("manual-1"));
    assert!(
        e.note
            .starts_with("[low] Job team-a/manual-1 was created by hand"),
        "{}",
        e.note
    );
    let mut f = cronwarden::api::CronJobFinding::new(&c.name, Default::default());
    f.metadata.namespace = Some(c.namespace.clone());
    f.spec.subject = c.meta.as_ref().unwrap().1.clone();
    f.status = c.status.clone();
    // The Job is gone.
    let Some(FindingAction::Upsert(c)) = plan_finding(None, Some(&f), None, &t0, week, false)
    else {
        panic!("no resolution");
    };
    let active = c
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Active")
        .unwrap();
    assert_eq!(active.reason, "JobDeleted");
    assert_eq!(c.events[0].regarding.kind.as_deref(), Some("Job"));
}

#[test]
fn the_index_keeps_a_covered_job_small_and_quiet() {
    use cronwarden::controller::observe::index::State;
    let mut st = State::default();
    let j = job(unannotated);
    st.apply_job(JobItem::View(j.clone()));
    assert_eq!(st.take_dirty(), vec!["team-a".to_owned()]);
    st.forget_templates(&[("team-a".into(), "manual-1".into())]);
    assert!(st.is_covered("team-a", "manual-1"));
    assert!(st.job("team-a", "manual-1").is_none());
    assert_eq!(st.job_count(), 1);
    // Its uid is still known, for a finding it had before.
    let uid = j.uid.as_deref().unwrap();
    assert_eq!(
        st.covered_job_has_uid("team-a", "manual-1", uid),
        Some(true)
    );
    assert_eq!(
        st.covered_job_has_uid("team-a", "manual-1", "x"),
        Some(false)
    );
    assert_eq!(st.covered_job_has_uid("team-a", "other", uid), None);
    // A status update brings the full projection again: nothing changes.
    st.apply_job(JobItem::View(j.clone()));
    assert!(st.take_dirty().is_empty());
    assert!(st.is_covered("team-a", "manual-1"));
    // A relist keeps it covered.
    st.reset_jobs(vec![JobItem::View(j.clone())]);
    assert!(st.is_covered("team-a", "manual-1"));
    let _ = st.take_dirty();
    // An ownerReference edited afterwards: evaluated again, whole.
    let mut moved = j.clone();
    moved.claim.as_mut().unwrap().uid = "another-uid".into();
    st.apply_job(JobItem::View(moved));
    assert_eq!(st.take_dirty(), vec!["team-a".to_owned()]);
    assert!(!st.is_covered("team-a", "manual-1"));
    assert!(st.job("team-a", "manual-1").unwrap().template.is_some());
    st.delete_job("team-a", "manual-1");
    st.drop_gone_jobs(&["team-a".to_owned()]);
    assert_eq!(st.job_count(), 0);
    // Deleting a covered Job forgets it at once.
    st.apply_job(JobItem::View(j.clone()));
    st.forget_templates(&[("team-a".into(), "manual-1".into())]);
    st.delete_job("team-a", "manual-1");
    assert_eq!(st.job_count(), 0);
    assert!(st.covered_jobs.is_empty());
}

#[test]
fn covered_job_digests_differ_in_every_field_lineage_reads() {
    use cronwarden::controller::observe::index::CoveredJob;
    let j = job(unannotated);
    let base = CoveredJob::of(&j);
    assert_eq!(base, CoveredJob::of(&j.clone()));
    let mut v = j.clone();
    v.uid = Some("other".into());
    assert_ne!(CoveredJob::of(&v), base);
    let mut v = j.clone();
    v.claim.as_mut().unwrap().cronjob.push('x');
    assert_ne!(CoveredJob::of(&v), base);
    let mut v = j.clone();
    v.claim = None;
    assert_ne!(CoveredJob::of(&v), base);
    let mut v = j.clone();
    v.manual = !v.manual;
    assert_ne!(CoveredJob::of(&v), base);
    let mut v = j.clone();
    v.template_hash.push('0');
    assert_ne!(CoveredJob::of(&v), base);
    // Bytes moved from one field to the next do not collide.
    let mut a = j.clone();
    let mut b = j.clone();
    a.claim.as_mut().unwrap().cronjob = "ab".into();
    a.claim.as_mut().unwrap().uid = "c".into();
    b.claim.as_mut().unwrap().cronjob = "a".into();
    b.claim.as_mut().unwrap().uid = "bc".into();
    assert_ne!(CoveredJob::of(&a), CoveredJob::of(&b));
}

#[test]
fn a_covered_job_is_compacted_as_it_arrives() {
    use cronwarden::controller::observe::index::State;
    let mut st = State::default();
    st.apply_cronjob(cronjob_view());
    assert!(matches!(
        st.compact_job(job(unannotated)),
        JobItem::Covered { .. }
    ));
    // A manual run, or a forgery, keeps what the heuristics read.
    assert!(matches!(st.compact_job(job(|_| {})), JobItem::View(v) if v.template.is_some()));
    let forged = job(|v| {
        unannotated(v);
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example.com/x:1");
    });
    assert!(matches!(st.compact_job(forged), JobItem::View(v) if v.template.is_some()));
}
