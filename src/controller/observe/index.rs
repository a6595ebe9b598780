//! The in-memory index fed by watch events (linkerd's pattern: `apply`,
//! `delete`, `reset` on relist), and which namespaces need re-evaluation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use super::stored::{Keyed, StoredFinding};
use crate::api::{ClusterCronJobBaseline, CronJobBaseline, CronJobBaselineStatus, CronJobFinding};
use crate::engine::governance::{baseline_key, governs};
use crate::engine::jobs::{JobView, TemplateHistory, last_spec_write};
use crate::engine::{CompiledBaseline, CronJobView, Engine, NamespaceSummary, Tier};

pub type Labels = BTreeMap<String, String>;

/// Which watch a sync flag belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CronJobs = 0,
    Namespaces = 1,
    Baselines = 2,
    Findings = 3,
    ClusterBaselines = 4,
    Jobs = 5,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CronJobs => "CronJob",
            Kind::Namespaces => "Namespace",
            Kind::Baselines => "CronJobBaseline",
            Kind::Findings => "CronJobFinding",
            Kind::ClusterBaselines => "ClusterCronJobBaseline",
            Kind::Jobs => "Job",
        }
    }
}

/// A baseline of either tier, as the index keeps it (no managedFields).
#[derive(Clone, Debug)]
pub enum StoredBaseline {
    Namespaced(CronJobBaseline),
    Cluster(ClusterCronJobBaseline),
}

impl StoredBaseline {
    fn meta(&self) -> &ObjectMeta {
        match self {
            StoredBaseline::Namespaced(b) => &b.metadata,
            StoredBaseline::Cluster(b) => &b.metadata,
        }
    }

    fn tier(&self) -> Tier {
        match self {
            StoredBaseline::Namespaced(_) => Tier::Namespace,
            StoredBaseline::Cluster(_) => Tier::Cluster,
        }
    }

    /// `namespace/name`, or `ClusterCronJobBaseline/name`.
    pub fn key(&self) -> String {
        let m = self.meta();
        baseline_key(
            self.tier(),
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
        )
    }

    pub fn status(&self) -> Option<&CronJobBaselineStatus> {
        match self {
            StoredBaseline::Namespaced(b) => b.status.as_ref(),
            StoredBaseline::Cluster(b) => b.status.as_ref(),
        }
    }

    pub fn generation(&self) -> Option<i64> {
        self.meta().generation
    }

    pub fn uid(&self) -> Option<String> {
        self.meta().uid.clone()
    }

    /// Same spec and generation: only the status (often our own write) moved.
    fn same_spec(&self, other: &StoredBaseline) -> bool {
        self.generation() == other.generation()
            && match (self, other) {
                (StoredBaseline::Namespaced(a), StoredBaseline::Namespaced(b)) => a.spec == b.spec,
                (StoredBaseline::Cluster(a), StoredBaseline::Cluster(b)) => a.spec == b.spec,
                _ => false,
            }
    }

    fn compile(&self, engine: &Engine) -> CompiledBaseline {
        match self {
            StoredBaseline::Namespaced(b) => engine.compile(b),
            StoredBaseline::Cluster(b) => engine.compile(b),
        }
    }

    fn strip(mut self) -> Self {
        match &mut self {
            StoredBaseline::Namespaced(b) => b.metadata.managed_fields = None,
            StoredBaseline::Cluster(b) => b.metadata.managed_fields = None,
        }
        self
    }
}

impl From<CronJobBaseline> for StoredBaseline {
    fn from(b: CronJobBaseline) -> Self {
        StoredBaseline::Namespaced(b)
    }
}

impl From<ClusterCronJobBaseline> for StoredBaseline {
    fn from(b: ClusterCronJobBaseline) -> Self {
        StoredBaseline::Cluster(b)
    }
}

/// A Job its CronJob covers (SPEC 3.6), as the index keeps it: a digest
/// of what lineage decided on (uid, the ownerReference claimed, the manual
/// annotation, the template hash), 16 bytes of SHA-256, and one of its uid.
/// A covered Job is
/// never evaluated again; the digest only tells whether a later event for
/// it (status updates, mostly) changed any of that, which sends it back to
/// full evaluation. A cryptographic hash, so a changed Job cannot be made
/// to look unchanged. 30,000 Jobs kept as projections cost 13 MB (about
/// 430 bytes each); as digests, about 70 bytes each with their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoveredJob {
    digest: [u8; 16],
    /// The same for its uid alone: a finding the Job had before it was
    /// found covered resolves as Resolved, not JobDeleted, while the Job
    /// with that uid is there.
    uid: [u8; 16],
}

fn sha256_16(fields: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Length-prefixed, so no two field lists hash alike by shifting bytes
    // between fields.
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    let d = h.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl CoveredJob {
    pub fn of(job: &JobView) -> Self {
        let uid = job.uid.as_deref().unwrap_or_default().as_bytes();
        let (claim, cronjob, claim_uid): (&[u8], &[u8], &[u8]) = match &job.claim {
            Some(c) => (b"claim", c.cronjob.as_bytes(), c.uid.as_bytes()),
            None => (b"none", b"", b""),
        };
        CoveredJob {
            digest: sha256_16(&[
                uid,
                claim,
                cronjob,
                claim_uid,
                &[u8::from(job.manual)],
                job.template_hash.as_bytes(),
            ]),
            uid: sha256_16(&[uid]),
        }
    }

    pub fn has_uid(&self, uid: &str) -> bool {
        self.uid == sha256_16(&[uid.as_bytes()])
    }
}

/// Remove `name` from the namespace's map, and the map once it is empty.
fn remove_nested<K: Ord + std::borrow::Borrow<str>, V>(
    m: &mut BTreeMap<String, BTreeMap<K, V>>,
    ns: &str,
    name: &str,
) -> Option<V> {
    let inner = m.get_mut(ns)?;
    let v = inner.remove(name);
    if inner.is_empty() {
        m.remove(ns);
    }
    v
}

/// A Job as its watch hands it to the index.
#[derive(Clone, Debug)]
pub enum JobItem {
    /// Not known to be covered: the whole projection, for evaluation.
    View(JobView),
    /// Found covered by its CronJob as it arrived.
    Covered {
        namespace: String,
        name: String,
        digest: CoveredJob,
    },
}

impl JobItem {
    pub fn namespace(&self) -> &str {
        match self {
            JobItem::View(j) => &j.namespace,
            JobItem::Covered { namespace, .. } => namespace,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            JobItem::View(j) => &j.name,
            JobItem::Covered { name, .. } => name,
        }
    }
}

#[derive(Default)]
pub struct State {
    /// namespace → name → stripped CronJob.
    pub cronjobs: BTreeMap<String, BTreeMap<String, CronJobView>>,
    pub namespaces: BTreeMap<String, Labels>,
    /// Baseline key → (object, compiled form, kept until the spec changes).
    pub baselines: BTreeMap<String, (StoredBaseline, CompiledBaseline)>,
    /// namespace → name → projected Job, for those not known to be
    /// covered by their CronJob.
    pub jobs: BTreeMap<String, BTreeMap<String, JobView>>,
    /// namespace → name → a covered Job's digest.
    pub covered_jobs: BTreeMap<String, BTreeMap<Box<str>, CoveredJob>>,
    /// namespace → CronJob name → the templates it has had while watched.
    pub histories: BTreeMap<String, BTreeMap<String, TemplateHistory>>,
    /// namespace → name → finding, deflated (decoded while its namespace
    /// is planned).
    pub findings: BTreeMap<String, BTreeMap<String, StoredFinding>>,
    /// Last engine verdict per namespace, summarised (baseline counts,
    /// metrics).
    pub results: BTreeMap<String, NamespaceSummary>,
    pub dirty: BTreeSet<String>,
    pub all_dirty: bool,
    pub baselines_dirty: bool,
    /// Keys whose last writes failed, waiting out their backoff (SPEC 5.3):
    /// namespace → (when to retry, failures in a row). A new watch event
    /// for the key brings it back at once; nothing else waits for it.
    pub backoff: BTreeMap<String, (Instant, u32)>,
    /// The same for the baseline status writes.
    pub baselines_backoff: Option<(Instant, u32)>,
    /// uids of findings the watch saw deleted, most recent last: a write
    /// response that arrives after the delete (the namespace controller
    /// removing a namespace's findings while we write one) must not bring
    /// the finding back into the index.
    deleted_findings: std::collections::VecDeque<String>,
    /// Without `--watch-jobs` the Job watch never runs: counted as synced.
    synced: [bool; 6],
}

impl State {
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    /// The Job watch is off: do not wait for it.
    pub fn without_jobs(&mut self) {
        self.synced[Kind::Jobs as usize] = true;
    }

    pub fn job_count(&self) -> usize {
        self.jobs.values().map(BTreeMap::len).sum::<usize>()
            + self.covered_jobs.values().map(BTreeMap::len).sum::<usize>()
    }

    /// The Job is indexed as covered by its CronJob.
    pub fn is_covered(&self, ns: &str, name: &str) -> bool {
        self.covered_digest(ns, name).is_some()
    }

    /// A covered Job of that name: whether it has this uid.
    pub fn covered_job_has_uid(&self, ns: &str, name: &str, uid: &str) -> Option<bool> {
        self.covered_digest(ns, name).map(|c| c.has_uid(uid))
    }

    fn covered_digest(&self, ns: &str, name: &str) -> Option<CoveredJob> {
        self.covered_jobs.get(ns).and_then(|m| m.get(name)).copied()
    }

    pub fn is_synced(&self, kind: Kind) -> bool {
        self.synced[kind as usize]
    }

    /// A Job its CronJob covers, as it arrives: its pod projection is
    /// dropped at once (the initial list of a cluster's Jobs is never held
    /// whole). Needs the CronJobs indexed: the Job watch starts after them.
    pub fn compact_job(&self, job: JobView) -> JobItem {
        if job.template.is_none() {
            return JobItem::View(job);
        }
        let claimed = job.claim.as_ref().map(|c| c.cronjob.as_str());
        let l = crate::engine::jobs::lineage(
            &job,
            claimed.and_then(|c| self.cronjob(&job.namespace, c)),
            claimed.and_then(|c| self.histories.get(&job.namespace).and_then(|h| h.get(c))),
            true,
        );
        if l == crate::engine::jobs::Lineage::Covered {
            JobItem::Covered {
                digest: CoveredJob::of(&job),
                namespace: job.namespace,
                name: job.name,
            }
        } else {
            JobItem::View(job)
        }
    }

    pub fn set_synced(&mut self, kind: Kind) {
        self.synced[kind as usize] = true;
        self.all_dirty = true;
        self.baselines_dirty = true;
    }

    pub fn mark(&mut self, ns: &str) {
        if !self.dirty.contains(ns) {
            self.dirty.insert(ns.to_owned());
        }
    }

    pub fn cronjob_count(&self) -> usize {
        self.cronjobs.values().map(BTreeMap::len).sum()
    }

    pub fn cronjob(&self, ns: &str, name: &str) -> Option<&CronJobView> {
        self.cronjobs.get(ns).and_then(|m| m.get(name))
    }

    // ------------------------------------------------------------ CronJobs

    pub fn apply_cronjob(&mut self, view: CronJobView) {
        let slot = self.cronjobs.entry(view.namespace.clone()).or_default();
        if let Some(old) = slot.get_mut(&view.name)
            && *old == view
        {
            // A status write: same evidence, newer resourceVersion.
            old.resource_version = view.resource_version;
            return;
        }
        self.remember_template(&view);
        let ns = view.namespace.clone();
        self.cronjobs
            .entry(ns.clone())
            .or_default()
            .insert(view.name.clone(), view);
        self.mark(&ns);
    }

    /// Lineage (SPEC 3.6) needs the templates a CronJob has had.
    fn remember_template(&mut self, view: &CronJobView) {
        let hash = view
            .pod
            .as_ref()
            .map(|p| p.template_hash.as_str())
            .unwrap_or_default();
        self.histories
            .entry(view.namespace.clone())
            .or_default()
            .entry(view.name.clone())
            .or_default()
            .observe(hash, last_spec_write(view), &crate::controller::now());
    }

    pub fn delete_cronjob(&mut self, ns: &str, name: &str) {
        if let Some(m) = self.cronjobs.get_mut(ns) {
            m.remove(name);
        }
        if let Some(h) = self.histories.get_mut(ns) {
            h.remove(name);
        }
        self.mark(ns);
    }

    pub fn reset_cronjobs(&mut self, all: Vec<CronJobView>) {
        // Collected whole, a BTreeMap is bulk-built with full nodes (a later
        // duplicate wins); inserted one by one, its nodes end about half
        // empty, and a node holds 11 views.
        let mut runs: BTreeMap<String, Vec<(String, CronJobView)>> = BTreeMap::new();
        let mut histories = std::mem::take(&mut self.histories);
        let now = crate::controller::now();
        for v in &all {
            let hash = v
                .pod
                .as_ref()
                .map(|p| p.template_hash.as_str())
                .unwrap_or_default();
            histories
                .entry(v.namespace.clone())
                .or_default()
                .entry(v.name.clone())
                .or_default()
                .observe(hash, last_spec_write(v), &now);
        }
        // Histories of CronJobs that are gone go with them.
        histories.retain(|ns, m| {
            m.retain(|name, _| all.iter().any(|v| &v.namespace == ns && &v.name == name));
            !m.is_empty()
        });
        self.histories = histories;
        for v in all {
            runs.entry(v.namespace.clone())
                .or_default()
                .push((v.name.clone(), v));
        }
        self.cronjobs = runs
            .into_iter()
            .map(|(ns, run)| (ns, run.into_iter().collect()))
            .collect();
        self.all_dirty = true;
    }

    // ------------------------------------------------------------ Jobs

    /// A live Job (not one kept after deletion for its last evaluation).
    pub fn job(&self, ns: &str, name: &str) -> Option<&JobView> {
        self.jobs
            .get(ns)
            .and_then(|m| m.get(name))
            .filter(|j| !j.gone)
    }

    pub fn apply_job(&mut self, item: JobItem) {
        let job = match item {
            JobItem::Covered {
                namespace,
                name,
                digest,
            } => {
                if self.covered_digest(&namespace, &name) == Some(digest) {
                    return;
                }
                remove_nested(&mut self.jobs, &namespace, &name);
                self.mark(&namespace);
                self.covered_jobs
                    .entry(namespace)
                    .or_default()
                    .insert(name.into_boxed_str(), digest);
                return;
            }
            JobItem::View(job) => job,
        };
        if let Some(d) = self.covered_digest(&job.namespace, &job.name) {
            if d == CoveredJob::of(&job) {
                // A status update of a Job already found covered.
                return;
            }
            // What lineage decided on changed (an ownerReference edited):
            // evaluated again, whole.
            remove_nested(&mut self.covered_jobs, &job.namespace, &job.name);
        }
        let slot = self.jobs.entry(job.namespace.clone()).or_default();
        if let Some(old) = slot.get(&job.name)
            && old.uid == job.uid
            && old.claim == job.claim
            && old.manual == job.manual
            && old.template_hash == job.template_hash
            && old.template == job.template
        {
            // A status update.
            return;
        }
        let ns = job.namespace.clone();
        slot.insert(job.name.clone(), job);
        self.mark(&ns);
    }

    /// A Job not yet found covered is kept for one more evaluation, marked
    /// gone, so one that lived only milliseconds (the garbage collector
    /// deletes a Job whose owner uid does not exist) still leaves its
    /// finding; [`State::drop_gone_jobs`] removes it after the round.
    pub fn delete_job(&mut self, ns: &str, name: &str) {
        if remove_nested(&mut self.covered_jobs, ns, name).is_some() {
            self.mark(ns);
            return;
        }
        if let Some(m) = self.jobs.get_mut(ns) {
            match m.get_mut(name) {
                Some(j) if j.template.is_some() && !j.gone => j.gone = true,
                _ => {
                    m.remove(name);
                }
            }
            if m.is_empty() {
                self.jobs.remove(ns);
            }
        }
        self.mark(ns);
    }

    /// After a round: forget the Jobs evaluated once more after deletion,
    /// and re-evaluate their namespaces (their findings resolve).
    pub fn drop_gone_jobs(&mut self, namespaces: &[String]) {
        for ns in namespaces {
            let Some(m) = self.jobs.get_mut(ns) else {
                continue;
            };
            let before = m.len();
            m.retain(|_, j| !j.gone);
            let dropped = m.len() != before;
            if m.is_empty() {
                self.jobs.remove(ns);
            }
            if dropped {
                self.mark(ns);
            }
        }
    }

    pub fn reset_jobs(&mut self, all: Vec<JobItem>) {
        let mut runs: BTreeMap<String, Vec<(String, JobView)>> = BTreeMap::new();
        let mut covered: BTreeMap<String, Vec<(Box<str>, CoveredJob)>> = BTreeMap::new();
        for item in all {
            let (namespace, name, digest) = match item {
                JobItem::Covered {
                    namespace,
                    name,
                    digest,
                } => (namespace, name, digest),
                // A Job already found covered stays covered (its template
                // was checked when it arrived) while nothing lineage
                // decided on changed.
                JobItem::View(j) => {
                    let digest = self
                        .covered_digest(&j.namespace, &j.name)
                        .filter(|d| *d == CoveredJob::of(&j));
                    let Some(digest) = digest else {
                        runs.entry(j.namespace.clone())
                            .or_default()
                            .push((j.name.clone(), j));
                        continue;
                    };
                    (j.namespace, j.name, digest)
                }
            };
            covered
                .entry(namespace)
                .or_default()
                .push((name.into_boxed_str(), digest));
        }
        self.jobs = runs
            .into_iter()
            .map(|(ns, run)| (ns, run.into_iter().collect()))
            .collect();
        self.covered_jobs = covered
            .into_iter()
            .map(|(ns, run)| (ns, run.into_iter().collect()))
            .collect();
        self.all_dirty = true;
    }

    /// Jobs found covered by their CronJob in a round keep only their
    /// digest.
    pub fn forget_templates(&mut self, covered: &[(String, String)]) {
        for (ns, name) in covered {
            let Some(j) = remove_nested(&mut self.jobs, ns, name) else {
                continue;
            };
            if j.gone {
                continue;
            }
            self.covered_jobs
                .entry(ns.clone())
                .or_default()
                .insert(name.clone().into_boxed_str(), CoveredJob::of(&j));
        }
    }

    // ------------------------------------------------------------ Namespaces

    pub fn apply_namespace(&mut self, name: String, labels: Labels) {
        if self.namespaces.get(&name) != Some(&labels) {
            self.mark(&name);
            self.namespaces.insert(name, labels);
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
        self.mark(name);
    }

    /// After a namespace was evaluated: once it is deleted and nothing of
    /// it is left (its CronJobs, Jobs and findings go with it, each by its
    /// own watch), forget it entirely: verdicts, template histories,
    /// backoff. Empty maps are dropped in any case. Its metric series go
    /// with its verdict (SPEC 5.1).
    pub fn prune(&mut self, ns: &str) {
        fn drop_empty<K, V>(m: &mut BTreeMap<String, BTreeMap<K, V>>, ns: &str) -> bool {
            if m.get(ns).is_some_and(BTreeMap::is_empty) {
                m.remove(ns);
            }
            !m.contains_key(ns)
        }
        let empty = drop_empty(&mut self.cronjobs, ns)
            & drop_empty(&mut self.jobs, ns)
            & drop_empty(&mut self.covered_jobs, ns)
            & drop_empty(&mut self.findings, ns);
        if empty && !self.namespaces.contains_key(ns) && self.is_synced(Kind::Namespaces) {
            self.results.remove(ns);
            self.histories.remove(ns);
            self.backoff.remove(ns);
        }
    }

    pub fn reset_namespaces(&mut self, all: Vec<(String, Labels)>) {
        self.namespaces = all.into_iter().collect();
        self.all_dirty = true;
    }

    // ------------------------------------------------------------ Baselines

    /// Namespaces a baseline governs under the current labels.
    fn scope_of(&self, c: &CompiledBaseline) -> Vec<String> {
        match c.tier {
            Tier::Namespace => vec![c.namespace.clone()],
            Tier::Cluster => self
                .namespaces
                .iter()
                .filter(|(_, l)| governs(c, l))
                .map(|(n, _)| n.clone())
                .collect(),
        }
    }

    /// A baseline change re-evaluates the namespaces it governed before and
    /// governs now, nothing else (SPEC 5).
    pub fn apply_baseline(&mut self, engine: &Engine, b: impl Into<StoredBaseline>) {
        let b = b.into().strip();
        let k = b.key();
        if let Some(slot) = self.baselines.get_mut(&k)
            && slot.0.same_spec(&b)
        {
            // Status-only update (often our own write): keep the object fresh.
            slot.0 = b;
            return;
        }
        let mut scope = self
            .baselines
            .get(&k)
            .map(|(_, c)| self.scope_of(c))
            .unwrap_or_default();
        let compiled = b.compile(engine);
        scope.extend(self.scope_of(&compiled));
        self.baselines.insert(k, (b, compiled));
        for ns in scope {
            self.mark(&ns);
        }
        self.baselines_dirty = true;
    }

    pub fn delete_baseline(&mut self, b: impl Into<StoredBaseline>) {
        let k = b.into().key();
        if let Some((_, c)) = self.baselines.remove(&k) {
            for ns in self.scope_of(&c) {
                self.mark(&ns);
            }
        }
        self.baselines_dirty = true;
    }

    /// Replace the baselines of one tier after a (re)list.
    pub fn reset_baselines(&mut self, engine: &Engine, tier: Tier, all: Vec<StoredBaseline>) {
        self.baselines.retain(|_, (_, c)| c.tier != tier);
        for b in all {
            let b = b.strip();
            let c = b.compile(engine);
            self.baselines.insert(b.key(), (b, c));
        }
        self.all_dirty = true;
        self.baselines_dirty = true;
    }

    // ------------------------------------------------------------ Findings

    /// Newer wins: a watch event older than what a write returned is
    /// ignored, so a lagging watch never makes us re-emit Events.
    pub fn apply_finding(&mut self, f: impl Into<Keyed>) {
        let Keyed {
            namespace: ns,
            name,
            stored,
        } = f.into();
        if let Some(uid) = stored.uid()
            && self.deleted_findings.iter().any(|d| d == uid)
        {
            return;
        }
        let slot = self.findings.entry(ns.clone()).or_default();
        if let Some(old) = slot.get(&name)
            && stored.is_older_than(old)
        {
            return;
        }
        slot.insert(name, stored);
        self.mark(&ns);
    }

    pub fn delete_finding(&mut self, f: &Keyed) {
        let ns = &f.namespace;
        if let Some(m) = self.findings.get_mut(ns)
            && m.get(&f.name)
                .is_some_and(|cur| cur.uid() == f.stored.uid())
        {
            m.remove(&f.name);
            if m.is_empty() {
                self.findings.remove(ns);
            }
        }
        if let Some(uid) = f.stored.uid() {
            if self.deleted_findings.len() >= 4096 {
                self.deleted_findings.pop_front();
            }
            self.deleted_findings.push_back(uid.to_owned());
        }
        self.mark(ns);
    }

    pub fn reset_findings(&mut self, all: Vec<Keyed>) {
        self.findings.clear();
        for f in all {
            self.findings
                .entry(f.namespace)
                .or_default()
                .insert(f.name, f.stored);
        }
        self.all_dirty = true;
    }

    /// The findings of a namespace, decoded for planning it.
    pub fn decode_findings(&self, ns: &str) -> Result<BTreeMap<String, CronJobFinding>, String> {
        self.findings
            .get(ns)
            .into_iter()
            .flatten()
            .map(|(name, f)| Ok((name.clone(), f.decode(ns, name)?)))
            .collect()
    }

    /// A key's writes failed: retry it after an exponential backoff with
    /// jitter (250 ms doubling, at most `max`), not before.
    pub fn failed(&mut self, ns: &str, now: Instant, max: Duration) {
        let n = self.backoff.get(ns).map_or(0, |(_, n)| *n) + 1;
        self.backoff
            .insert(ns.to_owned(), (now + backoff_delay(n, max), n));
    }

    pub fn baselines_failed(&mut self, now: Instant, max: Duration) {
        let n = self.baselines_backoff.map_or(0, |(_, n)| n) + 1;
        self.baselines_backoff = Some((now + backoff_delay(n, max), n));
    }

    /// A key evaluated and written without error forgets its failures.
    pub fn succeeded(&mut self, ns: &str) {
        self.backoff.remove(ns);
    }

    /// Move the keys whose backoff is over into the dirty set; returns when
    /// the next one is due.
    pub fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            // Its failure count stays until a round succeeds.
            if let Some(e) = self.backoff.get_mut(&k) {
                e.0 = far_future(now);
            }
            self.dirty.insert(k);
        }
        if let Some((at, _)) = self.baselines_backoff.as_mut()
            && *at <= now
        {
            *at = far_future(now);
            self.baselines_dirty = true;
        }
        self.backoff
            .values()
            .map(|(at, _)| *at)
            .chain(self.baselines_backoff.map(|(at, _)| at))
            .filter(|at| *at < far_future(now))
            .min()
    }

    /// Take the namespaces to re-evaluate now.
    pub fn take_dirty(&mut self) -> Vec<String> {
        if std::mem::take(&mut self.all_dirty) {
            self.dirty.clear();
            let mut all: BTreeSet<String> = self.namespaces.keys().cloned().collect();
            all.extend(self.cronjobs.keys().cloned());
            all.extend(self.jobs.keys().cloned());
            all.extend(self.covered_jobs.keys().cloned());
            all.extend(self.findings.keys().cloned());
            all.extend(self.baselines.values().map(|(_, c)| c.namespace.clone()));
            all.extend(self.results.keys().cloned());
            return all.into_iter().collect();
        }
        std::mem::take(&mut self.dirty).into_iter().collect()
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365)
}

/// 250 ms × 2^(n-1), capped, then "equal jitter": half fixed, half random,
/// so keys that failed together do not retry in lockstep.
pub fn backoff_delay(n: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
        .min(max);
    base / 2 + base.mul_f64(fastrand::f64() / 2.0)
}
