//! Start-up checks (issue 13, SPEC 5.1): what the controller needs from the
//! cluster, asked before anything starts, each missing piece named in one
//! line that says what to create or grant, instead of an API error dump
//! from deep inside a watch or the Lease manager.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use tracing::warn;

use crate::api::{ClusterCronJobBaseline, CronJobBaseline, CronJobFinding};
use crate::cli::RunArgs;

/// One permission the controller uses, and whether it cannot work without it.
struct Need {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    /// Namespace of a namespaced grant (the Lease's); None = cluster-wide.
    namespace: Option<String>,
    essential: bool,
}

fn needs(args: &RunArgs) -> Vec<Need> {
    let mut v = Vec::new();
    let mut need = |verb, group, resource, subresource, namespace: Option<String>, essential| {
        v.push(Need {
            verb,
            group,
            resource,
            subresource,
            namespace,
            essential,
        })
    };
    for verb in ["list", "watch"] {
        need(verb, "batch", "cronjobs", "", None, true);
        if args.watch_jobs {
            need(verb, "batch", "jobs", "", None, true);
        }
        need(verb, "", "namespaces", "", None, true);
        for r in [
            "cronjobbaselines",
            "clustercronjobbaselines",
            "cronjobfindings",
        ] {
            need(verb, "cronwarden.io", r, "", None, true);
        }
    }
    for verb in ["create", "patch", "delete"] {
        need(verb, "cronwarden.io", "cronjobfindings", "", None, true);
    }
    need(
        "patch",
        "cronwarden.io",
        "cronjobfindings",
        "status",
        None,
        true,
    );
    for r in ["cronjobbaselines", "clustercronjobbaselines"] {
        need("patch", "cronwarden.io", r, "status", None, true);
    }
    // Without it findings are still written; their Events wait in
    // status.pendingEvents until the permission is granted.
    need("create", "events.k8s.io", "events", "", None, false);
    if args.leader_election {
        let ns = Some(args.lease_namespace());
        for verb in ["get", "create", "update"] {
            need(verb, "coordination.k8s.io", "leases", "", ns.clone(), true);
        }
    }
    // Service-account power and /metrics both ask SubjectAccessReviews;
    // /metrics also asks who is calling (TokenReview).
    if args.check_service_accounts || !args.metrics_insecure {
        need(
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            "",
            None,
            false,
        );
    }
    if !args.metrics_insecure {
        need(
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            None,
            false,
        );
    }
    if args.allow_enforcement {
        need("patch", "batch", "cronjobs", "", None, false);
    }
    v
}

async fn list_one<K>(client: &Client) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// Ok, or the one line to print before exiting.
pub async fn check(client: &Client, args: &RunArgs) -> Result<(), String> {
    // CRDs: a list answers 404 for a kind that is not installed. Each of
    // the three is asked: with one missing, its watch would fail forever.
    let mut absent = Vec::new();
    for (plural, list) in [
        ("cronjobfindings", list_one::<CronJobFinding>(client).await),
        (
            "cronjobbaselines",
            list_one::<CronJobBaseline>(client).await,
        ),
        (
            "clustercronjobbaselines",
            list_one::<ClusterCronJobBaseline>(client).await,
        ),
    ] {
        match list {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => absent.push(plural),
            // 403 is reported below with every other missing permission.
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            Err(e) => return Err(format!("cannot reach the API server: {e}")),
        }
    }
    if !absent.is_empty() {
        return Err(format!(
            "the cronwarden.io CRDs are not installed (no {}): apply them first \
             (kubectl apply --server-side -f crds/, or kubectl kustomize config/crd)",
            absent.join(", ")
        ));
    }
    if args.leader_election {
        let ns = args.lease_namespace();
        let nss: Api<Namespace> = Api::all(client.clone());
        match nss.get_opt(&ns).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!(
                    "namespace {ns} (for the leader Lease) does not exist: create it \
                     (kubectl create namespace {ns}), or set --pod-namespace / POD_NAMESPACE, \
                     or run with --leader-election=false"
                ));
            }
            // Forbidden: reported with the other missing permissions.
            Err(_) => {}
        }
    }
    let mut missing = Vec::new();
    let mut optional = Vec::new();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for n in needs(args) {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(n.verb.into()),
                    group: Some(n.group.into()),
                    resource: Some(n.resource.into()),
                    subresource: (!n.subresource.is_empty()).then(|| n.subresource.into()),
                    namespace: n.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let allowed = match reviews.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                return Err(format!(
                    "cannot ask the API server what this controller may do: {e}"
                ));
            }
        };
        if !allowed {
            let what = format!(
                "{} {}{}{}{}",
                n.verb,
                n.resource,
                if n.subresource.is_empty() { "" } else { "/" },
                n.subresource,
                if n.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", n.group)
                },
            );
            let what = match &n.namespace {
                Some(ns) => format!("{what} in namespace {ns}"),
                None => what,
            };
            if n.essential {
                missing.push(what)
            } else {
                optional.push(what)
            }
        }
    }
    if !optional.is_empty() {
        warn!(
            missing = optional.join(", "),
            "RBAC: some permissions are missing; the features that need them wait until they are granted (config/rbac)"
        );
    }
    if !missing.is_empty() {
        return Err(format!(
            "RBAC: this controller's identity may not {}: grant them (config/rbac has the ClusterRole and the Lease Role)",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// `cronwarden run --check-config`: every problem the controller would stop
/// on at start-up, one line each, without starting anything. The
/// settings file and flags were already resolved by the caller (a problem
/// there exits 2 before this runs).
pub async fn check_config(args: &RunArgs) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::engine::Engine::new(args.engine.settings()) {
        problems.push(format!("settings: {e}"));
    }
    if !args.metrics_insecure
        && let Err(e) = super::metrics_auth::tls_config(
            args.metrics_cert.as_deref(),
            args.metrics_key.as_deref(),
        )
    {
        problems.push(format!("metrics TLS: {e:#}"));
    }
    if let Some(log) = &args.audit.log {
        let dir = log
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            problems.push(format!(
                "--audit-log {}: folder {} does not exist (is the audit log mounted?)",
                log.display(),
                dir.display()
            ));
        }
    }
    if args.audit.webhook_addr.is_some()
        && let Err(e) = crate::audit::webhook::check_flags(&args.audit)
    {
        problems.push(format!("audit webhook: {e:#}"));
    }
    match Client::try_default().await {
        Err(e) => problems.push(format!(
            "no Kubernetes client configuration (in-cluster service account or KUBECONFIG): {e}"
        )),
        Ok(client) => {
            if let Err(why) = check(&client, args).await {
                problems.push(why);
            }
        }
    }
    problems
}
