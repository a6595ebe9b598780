//! The scenarios. Each uses its own namespace and asserts through the API
//! with a deadline; "nothing happened" is asserted after the controller has
//! completed further reconcile rounds (read from its metrics), never after
//! a bare sleep.
//!
//! By theme: `findings` (a finding's life), `baselines` (what a baseline
//! says and how it is checked), `access` (the two baseline tiers, the
//! user roles and the admission policy: who may silence or change what),
//! `operations` (restart, failover, enforcement; they replace the running
//! controller, so they run last).

mod access;
mod audit;
mod baselines;
mod faults;
mod findings;
mod jobs;
mod operations;
mod power;

use std::time::Instant;

use crate::harness::Cluster;

// One namespace per scenario. A few scenarios continue from an earlier
// one's objects on purpose; they name the namespace they borrow.
const NS_UNAPPROVED: &str = "e2e-unapproved";
const NS_DRIFT: &str = "e2e-drift";
const NS_HEURISTICS: &str = "e2e-heuristics";
const NS_HAND_EDITS: &str = "e2e-hand-edits";
const NS_INVALID_BASELINES: &str = "e2e-invalid-baselines";
const NS_MANAGED_FIELDS: &str = "e2e-managed-fields";
const NS_SNAPSHOT_PIN: &str = "e2e-snapshot-pin";
const NS_TENANT: &str = "e2e-tenant";
const NS_ACCESS: &str = "e2e-access";
const NS_BORROW: &str = "e2e-borrow";
const NS_FAILOVER: &str = "e2e-failover";
const NS_ENFORCEMENT: &str = "e2e-enforcement";
const NS_AUDIT: &str = "e2e-audit";
const NS_JOBS: &str = "e2e-jobs";
const NS_POWER: &str = "e2e-power";
const NS_BURST: &str = "e2e-burst";
const NS_EVENTS_RBAC: &str = "e2e-events-rbac";
const NS_APISERVER: &str = "e2e-apiserver-restart";
const NS_DELETED: &str = "e2e-deleted";

/// `E2E_ONLY=text` runs only the scenarios whose name contains it (for
/// working on one; some scenarios build on earlier ones' objects).
macro_rules! scenario {
    ($results:expr, $name:expr, $body:expr) => {{
        let only = std::env::var("E2E_ONLY").unwrap_or_default();
        if $name.contains(only.as_str()) {
            let start = Instant::now();
            let r: Result<(), String> = $body.await;
            match &r {
                Ok(()) => println!(
                    "e2e {:<60} ok ({:.1}s)",
                    $name,
                    start.elapsed().as_secs_f64()
                ),
                Err(e) => println!("e2e {:<60} FAILED: {e}", $name),
            }
            $results.push(($name, r));
        }
    }};
}

/// Runs every scenario in a fixed order: later ones build on earlier ones'
/// objects, the restart scenario counts the Events of all before it, and
/// restart, failover and enforcement replace the controller, so they come
/// last.
pub async fn run_all(c: &Cluster) -> i32 {
    let mut results: Vec<(&str, Result<(), String>)> = Vec::new();
    let mut ctl = c.start_controller("cronwarden-a", &[]);
    if let Err(e) = ctl.ready().await {
        println!("e2e controller did not start: {e}");
        c.diagnostics(&[&ctl]).await;
        println!("0 passed, 1 failed");
        return 1;
    }
    scenario!(
        results,
        "unapproved CronJob -> finding, Event, columns, describe",
        findings::unapproved_cronjob_gets_finding_and_event(c)
    );
    scenario!(
        results,
        "approving it resolves the finding (Approved), one Event",
        findings::approving_resolves_finding(c, &ctl)
    );
    scenario!(
        results,
        "drift of image and schedule, then revert",
        findings::image_and_schedule_drift_then_revert(c, &ctl)
    );
    scenario!(
        results,
        "heuristics in an ungoverned namespace",
        findings::heuristics_in_ungoverned_namespace(c)
    );
    scenario!(
        results,
        "deleted CronJob: evidence kept, then retention",
        findings::deleted_cronjob_keeps_evidence_then_retention(c)
    );
    scenario!(
        results,
        "hand edits of a finding refused; deleted finding recreated",
        findings::hand_edits_refused_and_deleted_finding_recreated(c)
    );
    scenario!(
        results,
        "invalid baselines: schema rejects, engine rejects",
        baselines::invalid_baselines_rejected(c, &ctl)
    );
    scenario!(
        results,
        "managedFields: two managers, DeployPathNotApproved",
        baselines::second_field_manager_violates_deploy_path(c)
    );
    scenario!(
        results,
        "snapshot --pin-template approves the served object",
        baselines::snapshot_pin_approves_served_object(c, &ctl)
    );
    scenario!(
        results,
        "tenant cannot silence platform rules; cluster tier applies",
        access::tenant_cannot_silence_platform_rules(c, &ctl)
    );
    scenario!(
        results,
        "namespaced baseline rejects namespaceSelector",
        access::namespaced_baseline_rejects_namespace_selector(c)
    );
    scenario!(
        results,
        "access model: aggregated roles, admission, namespace deletion",
        access::access_model_roles_and_admission(c)
    );
    scenario!(
        results,
        "tenant names and labels CronJobs to borrow cluster exemptions",
        access::tenant_cannot_borrow_cluster_exemptions(c, &ctl)
    );
    scenario!(
        results,
        "jobs: covered, manual, forged, standalone (real cronjob controller)",
        jobs::lineage_with_real_cronjob_controller(c)
    );
    scenario!(
        results,
        "service-account power: cluster-admin, secrets reader, plain, no token",
        power::service_account_power_from_the_authorizer(c, &ctl)
    );
    scenario!(
        results,
        "audit: actor from log and webhook; webhook refusals",
        audit::actor_from_log_and_webhook(c, &mut ctl)
    );
    scenario!(
        results,
        "Events refused by RBAC: owed in status, written once allowed",
        faults::events_refused_then_allowed(c, &ctl)
    );
    scenario!(
        results,
        "namespace deletion releases findings, index and metrics",
        faults::namespace_deletion_releases_state(c, &ctl)
    );
    scenario!(
        results,
        "SIGKILL mid-burst of 200: all findings, one Event each",
        faults::crash_mid_burst(c, &mut ctl)
    );
    scenario!(
        results,
        "kube-apiserver restart: controller survives, still detects",
        faults::apiserver_restart(c, &mut ctl)
    );
    scenario!(
        results,
        "start-up problems: one line saying what to fix",
        operations::startup_problems_say_what_to_fix(c)
    );
    scenario!(
        results,
        "restart: no new Events, no writes",
        operations::restart_writes_nothing(c, &mut ctl)
    );
    scenario!(
        results,
        "two replicas: only the leader writes; failover",
        operations::failover_between_replicas(c, &mut ctl)
    );
    scenario!(
        results,
        "enforcement off: untouched; on: suspended",
        operations::enforcement_suspends_only_when_allowed(c, &mut ctl)
    );
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        c.diagnostics(&[&ctl]).await;
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    i32::from(failed > 0)
}
