//! What the engine reads of a CronJob, and nothing more.
//!
//! The controller keeps one [`CronJobView`] per CronJob of the cluster in
//! memory, so the view is a projection, not the k8s-openapi object: a
//! `CronJobSpec` is 2,720 bytes before its heap (every optional field of
//! the Job, Pod and Container types is stored inline), and each `Container`
//! 2,336; a view is 376. At 10,000 CronJobs the full objects cost the
//! controller over 100 MiB; the projection costs about a tenth of that. Everything a
//! rule needs is copied here when the object arrives, including the
//! template hash, which is the only rule that needs the whole pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::analysis::{Threat, container_threats};
use super::normalize;
use crate::api::ManagerRef;

/// Everything the engine decides over.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub cronjobs: Vec<CronJobView>,
    /// Jobs (SPEC 3.6): lineage against the CronJobs above, heuristics.
    pub jobs: Vec<super::jobs::JobView>,
    /// RBAC objects, for PowerfulServiceAccount offline (SPEC 3.7).
    pub rbac: super::power::offline::OfflineRbac,
    /// The namespace tier.
    pub baselines: Vec<crate::api::CronJobBaseline>,
    /// The cluster tier.
    pub cluster_baselines: Vec<crate::api::ClusterCronJobBaseline>,
    /// Namespace name → labels. Namespaces of CronJobs and baselines not
    /// listed here count as existing with only the label the API server
    /// sets on every namespace (`kubernetes.io/metadata.name`).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// JSON path of the pod spec inside a CronJob, for violation fields.
pub const POD_PATH: &str = "spec.jobTemplate.spec.template.spec";

/// A CronJob as the engine sees it: identity, labels, the schedule fields,
/// the security-relevant projection of its pod template, and the spec's
/// field managers. Status, annotations and the rest of the spec are gone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CronJobView {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub labels: LabelSet,
    pub created_at: Option<Time>,
    pub schedule: String,
    pub time_zone: Option<String>,
    pub suspend: Option<bool>,
    pub successful_jobs_history_limit: Option<i32>,
    pub failed_jobs_history_limit: Option<i32>,
    /// `spec.jobTemplate.spec.ttlSecondsAfterFinished`.
    pub ttl_seconds_after_finished: Option<i32>,
    /// `None` when the CronJob has no pod template spec.
    pub pod: Option<PodView>,
    /// Field managers that own parts of `spec` (SPEC 3.1 DeployPathNotApproved).
    pub managers: Vec<ManagerRef>,
    /// `metadata.generation`: moves with every spec change.
    pub generation: Option<i64>,
    /// `metadata.resourceVersion`, for attributing the evidence to an
    /// audited write (SPEC 2.4). It moves with every status write too, so
    /// it takes no part in comparing views ([`Untracked`]).
    pub resource_version: Untracked<Option<String>>,
}

/// Labels as a view keeps them: sorted pairs in one slice. The index holds
/// one view per CronJob, and a `BTreeMap<String, String>` allocates a
/// 540-byte node for even a single label (4.6 MB of the controller's heap
/// at 10,000 CronJobs with two labels each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet(Box<[(Box<str>, Box<str>)]>);

impl LabelSet {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// Every requirement holds: kube-core's `Expression::matches`, over
    /// these labels.
    pub fn satisfies(&self, requirements: &[kube::core::Expression]) -> bool {
        use kube::core::Expression as E;
        requirements.iter().all(|r| match r {
            E::In(k, values) => self.get(k).is_some_and(|v| values.contains(v)),
            E::NotIn(k, values) => self.get(k).is_none_or(|v| !values.contains(v)),
            E::Exists(k) => self.get(k).is_some(),
            E::DoesNotExist(k) => self.get(k).is_none(),
            E::Equal(k, value) => self.get(k) == Some(value.as_str()),
            E::NotEqual(k, value) => self.get(k) != Some(value.as_str()),
        })
    }
}

impl From<BTreeMap<String, String>> for LabelSet {
    fn from(m: BTreeMap<String, String>) -> Self {
        // Already sorted by key.
        LabelSet(
            m.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

/// A value carried along but ignored by `==`: two views that differ only
/// in it are the same evidence.
#[derive(Clone, Debug, Default)]
pub struct Untracked<T>(pub T);

impl<T> PartialEq for Untracked<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The pod template, reduced to what the rules read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_network: bool,
    /// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
    pub service_account: String,
    pub containers: Vec<ContainerView>,
    pub init_containers: Vec<ContainerView>,
    /// Only the hostPath volumes, with their index in `volumes`.
    pub host_paths: Vec<HostPathVolume>,
    /// [`normalize::template_hash`] of the full pod spec, computed on arrival.
    pub template_hash: String,
    /// A service-account token reaches the containers: automount not
    /// switched off in the pod (the ServiceAccount's own setting is not
    /// read, so unset counts as mounted), or a projected token volume.
    pub token_mounted: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub privileged: bool,
    pub allow_privilege_escalation: bool,
    /// `securityContext.capabilities.add`, as written.
    pub capabilities_add: Vec<String>,
    /// `seccompProfile` or `appArmorProfile` of type `Unconfined` (here or
    /// inherited from the pod), and `procMount: Unmasked`.
    pub unconfined: Vec<&'static str>,
    /// What its exec surfaces do (SPEC 3.3), analysed on arrival: usually
    /// empty.
    pub threats: Vec<Threat>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostPathVolume {
    /// Index in `spec.volumes`, for the violation's field path.
    pub index: usize,
    pub name: String,
    pub path: String,
}

impl From<CronJob> for CronJobView {
    fn from(cj: CronJob) -> Self {
        let managers = cj
            .metadata
            .managed_fields
            .as_deref()
            .map(normalize::spec_managers)
            .unwrap_or_default();
        let CronJobSpec {
            schedule,
            time_zone,
            suspend,
            successful_jobs_history_limit,
            failed_jobs_history_limit,
            job_template,
            ..
        } = cj.spec;
        let job = job_template.spec;
        let ttl_seconds_after_finished = job.as_ref().and_then(|j| j.ttl_seconds_after_finished);
        let pod = job.and_then(|j| {
            let annotations = j
                .template
                .metadata
                .and_then(|m| m.annotations)
                .unwrap_or_default();
            j.template.spec.map(|p| PodView::new(p, &annotations))
        });
        CronJobView {
            namespace: cj.metadata.namespace.unwrap_or_default(),
            name: cj.metadata.name.unwrap_or_default(),
            uid: cj.metadata.uid,
            labels: cj.metadata.labels.unwrap_or_default().into(),
            created_at: cj.metadata.creation_timestamp,
            schedule,
            time_zone,
            suspend,
            successful_jobs_history_limit,
            failed_jobs_history_limit,
            ttl_seconds_after_finished,
            pod,
            managers,
            generation: cj.metadata.generation,
            resource_version: Untracked(cj.metadata.resource_version),
        }
    }
}

impl CronJobView {
    /// A Job as the heuristics read it: its pod template; no schedule.
    pub fn from_job(job: Job) -> Self {
        let managers = job
            .metadata
            .managed_fields
            .as_deref()
            .map(normalize::spec_managers)
            .unwrap_or_default();
        let spec = job.spec.unwrap_or_default();
        let annotations = spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        CronJobView {
            namespace: job.metadata.namespace.unwrap_or_default(),
            name: job.metadata.name.unwrap_or_default(),
            uid: job.metadata.uid,
            labels: job.metadata.labels.unwrap_or_default().into(),
            created_at: job.metadata.creation_timestamp,
            schedule: String::new(),
            time_zone: None,
            suspend: spec.suspend,
            successful_jobs_history_limit: None,
            failed_jobs_history_limit: None,
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
            pod: spec.template.spec.map(|p| PodView::new(p, &annotations)),
            managers,
            generation: job.metadata.generation,
            resource_version: Untracked(job.metadata.resource_version),
        }
    }
}

impl From<PodSpec> for PodView {
    fn from(p: PodSpec) -> Self {
        PodView::new(p, &BTreeMap::new())
    }
}

impl PodView {
    /// `annotations` are the pod template's (AppArmor's beta annotation).
    pub fn new(p: PodSpec, annotations: &BTreeMap<String, String>) -> Self {
        let template_hash = normalize::template_hash(Some(&p));
        let service_account = [&p.service_account_name, &p.service_account]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        let volumes = p.volumes.unwrap_or_default();
        let projected_token = volumes.iter().any(|v| {
            v.projected.as_ref().is_some_and(|pr| {
                pr.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        });
        let token_mounted = p.automount_service_account_token != Some(false) || projected_token;
        let host_volumes: Vec<&str> = volumes
            .iter()
            .filter(|v| v.host_path.is_some())
            .map(|v| v.name.as_str())
            .collect();
        let pod_unconfined = pod_unconfined(p.security_context.as_ref());
        let annotations: Vec<(String, String)> = annotations
            .iter()
            .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let view =
            |c: Container| ContainerView::new(c, &host_volumes, &pod_unconfined, &annotations);
        let containers = compact(p.containers.into_iter().map(view));
        let init_containers = compact(p.init_containers.unwrap_or_default().into_iter().map(view));
        let host_paths = compact(volumes.into_iter().enumerate().filter_map(|(index, v)| {
            v.host_path.map(|hp| HostPathVolume {
                index,
                name: v.name,
                path: hp.path,
            })
        }));
        PodView {
            host_pid: p.host_pid == Some(true),
            host_ipc: p.host_ipc == Some(true),
            host_network: p.host_network == Some(true),
            service_account,
            containers,
            init_containers,
            host_paths,
            template_hash,
            token_mounted,
        }
    }
}

/// Pod-level `Unconfined` profiles, inherited by every container that sets none.
fn pod_unconfined(sc: Option<&PodSecurityContext>) -> [Option<&'static str>; 2] {
    let Some(sc) = sc else { return [None, None] };
    [
        sc.seccomp_profile
            .as_ref()
            .filter(|s| s.type_ == "Unconfined")
            .map(|_| "seccompProfile Unconfined"),
        sc.app_armor_profile
            .as_ref()
            .filter(|s| s.type_ == "Unconfined")
            .map(|_| "appArmorProfile Unconfined"),
    ]
}

/// Collect into a Vec of exactly the needed size. `vec.into_iter().map(..)
/// .collect()` reuses the source allocation, so a list of 2.3 KB
/// `Container`s would stay allocated under the small views made from it.
fn compact<T>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.shrink_to_fit();
    v
}

impl ContainerView {
    fn new(
        c: Container,
        host_volumes: &[&str],
        pod_unconfined: &[Option<&'static str>; 2],
        annotations: &[(String, String)],
    ) -> Self {
        let host_mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| host_volumes.contains(&m.name.as_str()))
            .map(|m| m.mount_path.clone())
            .collect();
        let threats = container_threats(&c, &host_mounts);
        let sc = c.security_context.unwrap_or_default();
        let unconfined = unconfined(&sc, pod_unconfined, &c.name, annotations);
        ContainerView {
            name: c.name,
            image: c.image,
            command: c.command.map(|v| compact(v.into_iter())),
            args: c.args.map(|v| compact(v.into_iter())),
            privileged: sc.privileged == Some(true),
            allow_privilege_escalation: sc.allow_privilege_escalation == Some(true),
            capabilities_add: sc.capabilities.and_then(|c| c.add).unwrap_or_default(),
            unconfined,
            threats,
        }
    }
}

/// The pod-template annotation AppArmor profiles were set with before
/// `appArmorProfile`, followed by the container name.
const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// seccomp/AppArmor `Unconfined` (container setting, else the pod's) and
/// `procMount: Unmasked` (SPEC 3.2).
fn unconfined(
    sc: &SecurityContext,
    pod: &[Option<&'static str>; 2],
    name: &str,
    annotations: &[(String, String)],
) -> Vec<&'static str> {
    let mut out = Vec::new();
    match &sc.seccomp_profile {
        Some(p) if p.type_ == "Unconfined" => out.push("seccompProfile Unconfined"),
        Some(_) => {}
        None => out.extend(pod[0]),
    }
    match &sc.app_armor_profile {
        Some(p) if p.type_ == "Unconfined" => out.push("appArmorProfile Unconfined"),
        Some(_) => {}
        None => {
            let this_container = |k: &str| k.strip_prefix(APPARMOR_ANNOTATION) == Some(name);
            if annotations
                .iter()
                .any(|(k, v)| this_container(k) && v == "unconfined")
            {
                out.push("AppArmor annotation unconfined");
            } else {
                out.extend(pod[1]);
            }
        }
    }
    if sc.proc_mount.as_deref() == Some("Unmasked") {
        out.push("procMount Unmasked");
    }
    out
}

/// Where a container sits in the CronJob, rendered as a JSON path only
/// when a violation needs it (keeps evaluation free of allocations).
#[derive(Clone, Copy, Debug)]
pub struct ContainerPath {
    pub list: &'static str,
    pub index: usize,
}

impl std::fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{POD_PATH}.{}[{}]", self.list, self.index)
    }
}

fn with_paths<'a>(
    list: &'static str,
    containers: &'a [ContainerView],
) -> impl Iterator<Item = (ContainerPath, &'a ContainerView)> {
    containers
        .iter()
        .enumerate()
        .map(move |(index, c)| (ContainerPath { list, index }, c))
}

impl PodView {
    /// Containers and initContainers with their paths.
    pub fn containers(&self) -> impl Iterator<Item = (ContainerPath, &ContainerView)> {
        with_paths("containers", &self.containers)
            .chain(with_paths("initContainers", &self.init_containers))
    }

    /// Every image with its container: containers and initContainers
    /// (the API server refuses ephemeral containers in templates).
    pub fn image_sites(&self) -> impl Iterator<Item = (ContainerPath, &str, &str)> {
        self.containers()
            .filter_map(|(p, c)| c.image.as_deref().map(|i| (p, c.name.as_str(), i)))
    }
}

impl CronJobView {
    /// All images, as written (containers, then initContainers).
    pub fn images(&self) -> Vec<String> {
        self.pod
            .iter()
            .flat_map(|p| p.image_sites())
            .map(|(_, _, image)| image.to_owned())
            .collect()
    }
}
