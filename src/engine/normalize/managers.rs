//! The deployment path (SPEC 3.4): who owns the spec, from managedFields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

use crate::api::ManagerRef;

/// Managers whose managedFields entries own fields under `f:spec`; status
/// subresource entries are ignored. One entry per manager and operation,
/// in the order the API server lists them.
pub fn spec_managers(entries: &[ManagedFieldsEntry]) -> Vec<ManagerRef> {
    let mut out: Vec<ManagerRef> = Vec::new();
    for e in entries {
        if e.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let spec = e.fields_v1.as_ref().and_then(|f| f.0.get("f:spec"));
        let owns_spec = spec.is_some_and(|s| s.as_object().is_none_or(|o| !o.is_empty()));
        if !owns_spec {
            continue;
        }
        // cronwarden's own enforcement patch (spec.suspend only) is not a
        // deployment path; any other field under that name still counts.
        let only_suspend = spec
            .and_then(|s| s.as_object())
            .is_some_and(|o| o.keys().all(|k| k == "f:suspend"));
        if e.manager.as_deref() == Some(crate::api::FIELD_MANAGER) && only_suspend {
            continue;
        }
        let manager = e.manager.clone().unwrap_or_default();
        let operation = e.operation.clone().unwrap_or_default();
        if out
            .iter()
            .any(|m| m.manager == manager && m.operation == operation)
        {
            continue;
        }
        out.push(ManagerRef {
            manager,
            operation,
            time: e.time.clone(),
        });
    }
    // Kept in every CronJob's view for as long as it exists: no spare
    // capacity (a first push reserves four).
    out.shrink_to_fit();
    out
}
