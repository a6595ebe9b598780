//! Helpers shared by the integration tests: objects as JSON values, fed
//! through the same manifest reader `scan` uses.
#![allow(dead_code)]

use cronwarden::api::Rule;
use cronwarden::engine::{Engine, Evaluation, Settings};
use cronwarden::manifest::Loaded;
use serde_json::{Value, json};

pub const POD: &str = "/spec/jobTemplate/spec/template/spec";

/// A CronJob that breaks no heuristic.
pub fn cronjob(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": "0 2 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "main", "image": "registry.example.com/team/app:1.0.0"}]
            }}}}
        }
    })
}

pub fn baseline(ns: &str, name: &str, entries: Value) -> Value {
    json!({
        "apiVersion": "cronwarden.io/v1alpha1",
        "kind": "CronJobBaseline",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"approved": entries}
    })
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// Set a value at a JSON pointer, creating objects on the way.
pub fn set(v: &mut Value, pointer: &str, new: Value) {
    let mut cur = v;
    for part in pointer.trim_start_matches('/').split('/') {
        if let Ok(i) = part.parse::<usize>()
            && let Some(a) = cur.as_array_mut()
        {
            if a.len() == i {
                a.push(Value::Null);
            }
            cur = &mut cur[i];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(part.to_owned())
            .or_insert(Value::Null);
    }
    *cur = new;
}

pub fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    set(&mut v, pointer, new);
    v
}

pub fn load(objects: &[Value]) -> Loaded {
    let mut text = String::new();
    for o in objects {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(o).unwrap());
        text.push('\n');
    }
    let mut loaded = Loaded::default();
    loaded.add_text("test.yaml", &text);
    assert!(
        loaded.errors.is_empty(),
        "test input must load: {:?}",
        loaded.errors
    );
    loaded
}

pub fn evaluate_with(objects: &[Value], settings: Settings) -> Evaluation {
    Engine::new(settings)
        .unwrap()
        .evaluate(&load(objects).inventory)
}

pub fn evaluate(objects: &[Value]) -> Evaluation {
    evaluate_with(objects, Settings::default())
}

/// Rules reported for one CronJob (empty when it has no finding).
pub fn rules(e: &Evaluation, ns: &str, name: &str) -> Vec<Rule> {
    e.findings
        .iter()
        .find(|f| f.namespace == ns && f.name == name)
        .map(|f| f.rules())
        .unwrap_or_default()
}

pub fn fires(objects: &[Value], rule: Rule) -> bool {
    let e = evaluate(objects);
    e.findings.iter().any(|f| f.rules().contains(&rule))
}

pub fn cluster_baseline(name: &str, selector: Option<Value>, entries: Value) -> Value {
    let mut spec = json!({"approved": entries});
    if let Some(s) = selector {
        spec["namespaceSelector"] = s;
    }
    json!({
        "apiVersion": "cronwarden.io/v1alpha1",
        "kind": "ClusterCronJobBaseline",
        "metadata": {"name": name},
        "spec": spec
    })
}
