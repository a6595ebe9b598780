//! Reading manifests: files, folders, stdin; multi-document YAML, JSON and
//! `List` objects. Every problem names the file, the document and the field.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::CronJob;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ClusterCronJobBaseline, CronJobBaseline};
use crate::engine::governance::baseline_key;
use crate::engine::{CronJobView, Inventory, Tier, normalize};

pub use crate::error::{InputError, Source};

/// Objects read from manifests, with where each came from.
#[derive(Debug, Default)]
pub struct Loaded {
    pub inventory: Inventory,
    pub cronjob_sources: Vec<Source>,
    /// Where each of `inventory.jobs` came from.
    pub job_sources: Vec<Source>,
    /// Baseline `namespace/name` → source.
    pub baseline_sources: BTreeMap<String, Source>,
    pub errors: Vec<InputError>,
    pub files_read: usize,
    /// Objects of the scanned input left out because `--baselines` gave
    /// the trusted ones (SPEC 8).
    pub ignored: Ignored,
}

/// What `scan --baselines` left out of the scanned input: in CI the
/// scanned folder is the change under review, and a baseline, Namespace or
/// RBAC object inside it must not approve (or relabel, or empower) itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    pub baselines: usize,
    pub namespaces: usize,
    pub rbac: usize,
    /// CronJobs and Jobs found in the `--baselines` paths: not scanned
    /// there (the scanned paths are the input), but counted, never
    /// dropped silently.
    pub workloads_in_baselines: usize,
}

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Expand paths: files as given, folders recursively (`*.yaml`, `*.yml`,
/// `*.json`, sorted), `-` for stdin.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
        } else if p.is_dir() {
            walk(p, &mut out).map_err(|e| {
                InputError::document(Source::file(p.display().to_string()), e.to_string())
            })?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(InputError::document(
                Source::file(p.display().to_string()),
                "no such file or folder",
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

impl Loaded {
    /// Read every path; errors are collected, never fatal, so one bad file
    /// does not hide the findings of the others.
    pub fn read_paths(paths: &[PathBuf]) -> Loaded {
        let mut loaded = Loaded::default();
        let files = match expand(paths) {
            Ok(f) => f,
            Err(e) => {
                loaded.errors.push(e);
                return loaded;
            }
        };
        for f in files {
            let name = if f.as_os_str() == "-" {
                "<stdin>".to_owned()
            } else {
                f.display().to_string()
            };
            let text = if f.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            } else {
                std::fs::read_to_string(&f)
            };
            match text {
                Ok(t) => loaded.add_text(&name, &t),
                Err(e) => loaded.errors.push(InputError::document(
                    Source::file(name),
                    format!("cannot read: {e}"),
                )),
            }
        }
        loaded
    }

    /// Take baselines, Namespaces and RBAC objects from `trusted` only
    /// (`scan --baselines`): those of this input are dropped and counted in
    /// [`Loaded::ignored`]. Problems of both are kept (bad input is bad
    /// input wherever it is).
    pub fn with_trusted(mut self, trusted: Loaded) -> Loaded {
        let inv = &mut self.inventory;
        self.ignored = Ignored {
            baselines: inv.baselines.len() + inv.cluster_baselines.len(),
            namespaces: inv.namespaces.len(),
            rbac: inv.rbac.len(),
            workloads_in_baselines: trusted.inventory.cronjobs.len() + trusted.inventory.jobs.len(),
        };
        inv.baselines = trusted.inventory.baselines;
        inv.cluster_baselines = trusted.inventory.cluster_baselines;
        inv.namespaces = trusted.inventory.namespaces;
        inv.rbac = trusted.inventory.rbac;
        self.baseline_sources = trusted.baseline_sources;
        self.errors.extend(trusted.errors);
        self.files_read += trusted.files_read;
        self
    }

    /// Add one file's text (YAML or JSON, one or more documents).
    pub fn add_text(&mut self, file: &str, text: &str) {
        self.files_read += 1;
        for (i, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
            let source = Source {
                file: file.to_owned(),
                document: i + 1,
                item: None,
            };
            if doc.trim().is_empty() {
                continue;
            }
            let value: Value = match serde_saphyr::from_str::<Value>(doc) {
                Ok(v) => v,
                Err(e) => {
                    let msg = e.to_string();
                    let msg = msg.lines().next().unwrap_or("");
                    let msg = msg.strip_prefix("error: ").unwrap_or(msg).to_owned();
                    self.errors.push(InputError {
                        location: source,
                        object: None,
                        field: None,
                        message: format!(
                            "malformed YAML (document starts at line {first_line}): {msg}"
                        ),
                    });
                    continue;
                }
            };
            self.add_value(source, value);
        }
    }

    /// Add one object (or `List`) already parsed.
    pub fn add_value(&mut self, source: Source, value: Value) {
        let obj = match &value {
            Value::Null => return,
            Value::Object(o) => o,
            _ => {
                self.errors.push(InputError {
                    location: source,
                    object: None,
                    field: None,
                    message: "document is not a mapping (a Kubernetes object)".into(),
                });
                return;
            }
        };
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = obj.get("kind").and_then(Value::as_str) else {
            // Not a Kubernetes object (values files, kustomize patches): not ours.
            return;
        };
        let kind = kind.to_owned();
        if kind.ends_with("List") && obj.get("items").is_some() {
            let Some(items) = obj.get("items").and_then(Value::as_array) else {
                self.errors.push(InputError {
                    location: source,
                    object: Some(kind),
                    field: Some("items".into()),
                    message: "items is not a list".into(),
                });
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let s = Source {
                    item: Some(i),
                    ..source.clone()
                };
                self.add_value(s, item.clone());
            }
            return;
        }
        let ident = object_ident(&kind, obj);
        match (api_version, kind.as_str()) {
            ("batch/v1" | "batch/v1beta1", "CronJob") => self.add_cronjob(source, ident, value),
            ("batch/v1", "Job") => self.add_job(source, ident, value),
            (
                "rbac.authorization.k8s.io/v1",
                "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
            ) => self.add_rbac(source, ident, &kind, value),
            ("cronwarden.io/v1alpha1", "CronJobBaseline") => {
                self.add_baseline(source, ident, value)
            }
            ("cronwarden.io/v1alpha1", "ClusterCronJobBaseline") => {
                self.add_cluster_baseline(source, ident, value)
            }
            ("v1", "Namespace") => {
                let name = obj
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if name.is_empty() {
                    self.errors.push(InputError {
                        location: source,
                        object: Some(ident),
                        field: Some("metadata.name".into()),
                        message: "is required".into(),
                    });
                    return;
                }
                let labels = obj
                    .get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(|l| {
                        serde_json::from_value::<BTreeMap<String, String>>(l.clone()).ok()
                    })
                    .unwrap_or_default();
                self.inventory.namespaces.insert(name.to_owned(), labels);
            }
            (_, "CronJobBaseline" | "ClusterCronJobBaseline" | "CronJob")
                if api_version.is_empty() =>
            {
                self.errors.push(InputError {
                    location: source,
                    object: Some(ident),
                    field: Some("apiVersion".into()),
                    message: "is required".into(),
                });
            }
            _ => {}
        }
    }

    fn add_rbac(&mut self, source: Source, ident: String, kind: &str, value: Value) {
        let rbac = &mut self.inventory.rbac;
        let r = match kind {
            "Role" => deserialize(value).map(|o| rbac.roles.push(o)),
            "ClusterRole" => deserialize(value).map(|o| rbac.cluster_roles.push(o)),
            "RoleBinding" => deserialize(value).map(|o| rbac.role_bindings.push(o)),
            _ => deserialize(value).map(|o| rbac.cluster_role_bindings.push(o)),
        };
        if let Err((path, msg)) = r {
            self.errors.push(InputError {
                location: source,
                object: Some(ident),
                field: Some(path),
                message: msg,
            });
        }
    }

    fn add_job(&mut self, source: Source, ident: String, value: Value) {
        let err = |field: &str, message: String| InputError {
            location: source.clone(),
            object: Some(ident.clone()),
            field: Some(field.to_owned()),
            message,
        };
        if value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            self.errors.push(err("metadata.name", "is required".into()));
            return;
        }
        if value.pointer("/spec/template").is_none() {
            self.errors.push(err("spec.template", "is required".into()));
            return;
        }
        let mut job: k8s_openapi::api::batch::v1::Job = match deserialize(value) {
            Ok(j) => j,
            Err((path, msg)) => {
                self.errors.push(err(&path, msg));
                return;
            }
        };
        if job.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            job.metadata.namespace = Some("default".into());
        }
        self.inventory
            .jobs
            .push(crate::engine::jobs::JobView::from(job));
        self.job_sources.push(source);
    }

    fn add_cronjob(&mut self, source: Source, ident: String, mut value: Value) {
        if let Some(o) = value.as_object_mut() {
            // batch/v1beta1 has the same shape for every field we read.
            o.insert("apiVersion".into(), Value::String("batch/v1".into()));
        }
        let err = |field: &str, message: String| InputError {
            location: source.clone(),
            object: Some(ident.clone()),
            field: Some(field.to_owned()),
            message,
        };
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() {
            self.errors.push(err("metadata.name", "is required".into()));
            return;
        }
        match value.pointer("/spec/schedule") {
            Some(Value::String(s)) => {
                if let Err(e) = normalize::parse_schedule(s) {
                    self.errors.push(err("spec.schedule", e));
                    return;
                }
            }
            Some(_) => {
                self.errors
                    .push(err("spec.schedule", "must be a string".into()));
                return;
            }
            None => {
                self.errors.push(err("spec.schedule", "is required".into()));
                return;
            }
        }
        if value.pointer("/spec/jobTemplate").is_none() {
            self.errors
                .push(err("spec.jobTemplate", "is required".into()));
            return;
        }
        let mut cj: CronJob = match deserialize(value) {
            Ok(c) => c,
            Err((path, msg)) => {
                self.errors.push(err(&path, msg));
                return;
            }
        };
        let pod = cj
            .spec
            .job_template
            .spec
            .as_ref()
            .and_then(|j| j.template.spec.as_ref());
        if pod.is_some_and(|p| {
            p.ephemeral_containers
                .as_ref()
                .is_some_and(|e| !e.is_empty())
        }) {
            // SPEC 3.5: the API server refuses them in templates.
            self.errors.push(err(
                "spec.jobTemplate.spec.template.spec.ephemeralContainers",
                "ephemeral containers are not allowed in a pod template (the API server refuses them)".into(),
            ));
            return;
        }
        if cj.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            cj.metadata.namespace = Some("default".into());
        }
        self.inventory.cronjobs.push(CronJobView::from(cj));
        self.cronjob_sources.push(source);
    }

    fn add_baseline(&mut self, source: Source, ident: String, value: Value) {
        if value.pointer("/spec/namespaceSelector").is_some() {
            self.errors.push(InputError::field(
                source,
                ident,
                "spec.namespaceSelector",
                "CronJobBaselines govern their own namespace only; select namespaces with a ClusterCronJobBaseline (README: moving to the cluster kind)",
            ));
            return;
        }
        let Some(mut b) = self.named::<CronJobBaseline>(&source, ident, value) else {
            return;
        };
        if b.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            b.metadata.namespace = Some("default".into());
        }
        let key = baseline_key(
            Tier::Namespace,
            &b.namespace().unwrap_or_default(),
            &b.name_any(),
        );
        self.baseline_sources.insert(key, source);
        self.inventory.baselines.push(b);
    }

    fn add_cluster_baseline(&mut self, source: Source, ident: String, value: Value) {
        let Some(b) = self.named::<ClusterCronJobBaseline>(&source, ident, value) else {
            return;
        };
        let key = baseline_key(Tier::Cluster, "", &b.name_any());
        self.baseline_sources.insert(key, source);
        self.inventory.cluster_baselines.push(b);
    }

    /// Deserialize an object that must have a name; errors name the field.
    fn named<T: DeserializeOwned + ResourceExt>(
        &mut self,
        source: &Source,
        ident: String,
        value: Value,
    ) -> Option<T> {
        let error = match deserialize::<T>(value) {
            Ok(o) if o.meta().name.as_deref().is_some_and(|n| !n.is_empty()) => return Some(o),
            Ok(_) => InputError::field(source.clone(), ident, "metadata.name", "is required"),
            Err((path, msg)) => InputError::field(source.clone(), ident, path, msg),
        };
        self.errors.push(error);
        None
    }
}

fn object_ident(kind: &str, obj: &serde_json::Map<String, Value>) -> String {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Deserialize with the path of the offending field.
fn deserialize<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        (
            if path == "." { "<root>".into() } else { path },
            e.inner().to_string(),
        )
    })
}

/// Split a YAML stream on document markers, keeping each document's first
/// line number so errors can point into the file. A `---` at column 0 is
/// always a marker (block scalars are indented).
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        let is_marker = trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "...";
        if is_marker {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = n + 2;
            if let Some(rest) = trimmed.strip_prefix("--- ") {
                // `--- {inline}`: keep the content after the marker.
                if !rest.trim().is_empty() && !rest.trim_start().starts_with('#') {
                    start = offset + 4;
                    start_line = n + 1;
                }
            }
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    // Empty documents (a leading `---`, a trailing one) are not counted,
    // as kubectl does not count them.
    docs.retain(|(_, d)| !d.trim().is_empty());
    docs
}
