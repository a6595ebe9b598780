//! Leader election on a coordination.k8s.io Lease (kube-lease-manager):
//! every replica watches and keeps its index warm, only the holder writes.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::RunArgs;

type LeaseTask = JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

/// A channel that says whether this replica leads, and the task holding the
/// Lease (none when leader election is off: then this replica always leads).
pub async fn elect(
    client: Client,
    args: &RunArgs,
    identity: String,
) -> anyhow::Result<(watch::Receiver<bool>, Option<LeaseTask>)> {
    if !args.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        return Ok((rx, None));
    }
    let duration = args.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, args.lease_name.clone())
        .with_namespace(args.lease_namespace())
        .with_identity(identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(crate::api::FIELD_MANAGER)
        .build()
        .await?;
    let (rx, task) = manager.watch().await;
    Ok((rx, Some(task)))
}
