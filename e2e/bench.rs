//! Measurements against a real API server (`make bench-e2e`); filled in below.
use crate::harness::Cluster;

pub async fn run(_c: &Cluster) -> Result<(), String> {
    Err("not implemented yet".into())
}
