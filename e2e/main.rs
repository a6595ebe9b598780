//! End-to-end: the real `cronwarden` binary against a real kube-apiserver,
//! checked the way a user sees it (kubectl get/describe, Events, baseline
//! status, metrics). The scenarios of the e2e issue, one function each,
//! named by what it proves (`scenarios/`); `-- bench` runs the
//! measurements instead (`make bench-e2e`). Both use the shared helpers and
//! manifest builders in `support`, never each other.
//!
//! A custom harness (harness = false) so the skip line and progress are
//! never swallowed by output capture.

mod bench;
mod harness;
mod scenarios;
mod support;

use std::time::Instant;

use harness::Cluster;

fn main() {
    let bench = std::env::args().any(|a| a == "bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async move {
        let cluster = match Cluster::start().await {
            Ok(c) => c,
            Err(why) => {
                println!("e2e skipped: {why}");
                return 0;
            }
        };
        let start = Instant::now();
        let code = if bench {
            bench::bench(&cluster).await
        } else {
            scenarios::run_all(&cluster).await
        };
        println!("e2e finished in {:.1}s", start.elapsed().as_secs_f64());
        code
    });
    std::process::exit(code);
}
