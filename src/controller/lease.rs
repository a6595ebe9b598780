//! Leader election on a coordination.k8s.io Lease (kube-lease-manager):
//! every replica watches and keeps its index warm, only the holder writes.
//!
//! Fencing (SPEC 5.1): a holder renews at half the lease duration, and the
//! [`Fence`] lets it write only until three quarters of it have passed
//! since its last renewal as the API server recorded it (the renew
//! deadline). Another replica may take the Lease only once the whole
//! duration has passed, so a holder that cannot renew (partitioned, API
//! server down, paused) has stopped writing a quarter of the duration
//! before anyone else can start: that quarter is the budget for clock
//! skew and for a request in flight.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cli::RunArgs;

type LeaseTask = JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

/// Whether this replica may write now.
pub struct Fence {
    always: bool,
    until: Mutex<Option<Instant>>,
}

impl Fence {
    /// No leader election: always allowed.
    pub fn open() -> Self {
        Fence {
            always: true,
            until: Mutex::new(None),
        }
    }

    /// Leader election: allowed only while a renewal of ours is fresh.
    pub fn closed() -> Self {
        Fence {
            always: false,
            until: Mutex::new(None),
        }
    }

    pub fn allows(&self) -> bool {
        self.always
            || self
                .until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|u| Instant::now() < u)
    }

    pub fn hold_until(&self, until: Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    pub fn revoke(&self) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Our Lease as the API server has it: held by us and renewed at
    /// `renew_time`, the fence holds for the renew deadline after it.
    pub fn observe(&self, lease: &Lease, identity: &str, renew_deadline: Duration) {
        let spec = lease.spec.as_ref();
        let ours = spec.and_then(|s| s.holder_identity.as_deref()) == Some(identity);
        let renewed = spec.and_then(|s| s.renew_time.as_ref());
        match (ours, renewed) {
            (true, Some(t)) => {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
                let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
                match renew_deadline.checked_sub(age) {
                    Some(left) => self.hold_until(Instant::now() + left),
                    None => self.revoke(),
                }
            }
            _ => self.revoke(),
        }
    }
}

/// The renew deadline for a lease duration: three quarters of it.
pub fn renew_deadline(duration: Duration) -> Duration {
    duration.mul_f64(0.75)
}

/// A channel that says whether this replica leads, and the task holding the
/// Lease (none when leader election is off: then this replica always leads).
/// With leader election, a watch on the Lease keeps `fence` up to date.
pub async fn elect(
    client: Client,
    args: &RunArgs,
    identity: String,
    fence: std::sync::Arc<Fence>,
) -> anyhow::Result<(watch::Receiver<bool>, Option<LeaseTask>)> {
    if !args.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        return Ok((rx, None));
    }
    let duration = args.lease_duration.as_secs().max(2);
    let namespace = args.lease_namespace();
    let api: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let deadline = renew_deadline(Duration::from_secs(duration));
    let me = identity.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.lease_name));
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(l)) | Ok(Event::InitApply(l)) => fence.observe(&l, &me, deadline),
                Ok(Event::Delete(_)) => fence.revoke(),
                Ok(_) => {}
                // The fence lapses on its own if renewals stop being seen.
                Err(e) => warn!(error = %e, "Lease watch error; retrying"),
            }
        }
    });
    let manager = LeaseManagerBuilder::new(client, args.lease_name.clone())
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace((duration / 2).max(1))
        .with_field_manager(crate::api::FIELD_MANAGER)
        .build()
        .await?;
    info!(
        duration_s = duration,
        renew_deadline_ms = deadline.as_millis() as u64,
        "leader election on"
    );
    let (rx, task) = manager.watch().await;
    Ok((rx, Some(task)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, age: Duration) -> Lease {
        let t = k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::try_from(age).unwrap();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(t)),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_fence_holds_only_within_the_renew_deadline_of_our_renewal() {
        let f = Fence::closed();
        assert!(!f.allows(), "closed until a renewal is seen");
        let d = renew_deadline(Duration::from_secs(15));
        assert_eq!(d, Duration::from_millis(11_250));
        f.observe(&lease("me", Duration::from_secs(1)), "me", d);
        assert!(f.allows());
        // A renewal older than the deadline: no longer safe to write.
        f.observe(&lease("me", Duration::from_secs(12)), "me", d);
        assert!(!f.allows());
        f.observe(&lease("me", Duration::ZERO), "me", d);
        assert!(f.allows());
        // Someone else holds it: stop at once.
        f.observe(&lease("other", Duration::ZERO), "me", d);
        assert!(!f.allows());
        // The deadline passes with no renewal seen.
        f.hold_until(Instant::now());
        assert!(!f.allows());
        assert!(Fence::open().allows());
    }
}
