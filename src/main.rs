use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use cronwarden::cli::{BaselineCommand, Cli, Command, SnapshotArgs};
use cronwarden::engine::{CronJobView, Engine};
use cronwarden::manifest::Loaded;
use cronwarden::snapshot::{SnapshotOptions, snapshot, to_cluster, to_yaml};
use cronwarden::{audit, crd, scan};

/// mimalloc: evaluation allocates many small, short-lived strings; glibc's
/// allocator tripled the engine's time in `make bench` (5.2 → 15.2 ms for
/// 10,000 CronJobs).
#[cfg(not(feature = "sysalloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same index in
/// its v2 and v3; libmimalloc-sys names no constant for it). A test below
/// checks the index still holds that option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` (v3; checked by a test below like the one above).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// The controller runs for weeks and its load comes in bursts: the initial
/// lists, a baseline edit that rewrites a thousand findings. mimalloc v3
/// keeps freed pages for a second by default, and those of a thread that
/// then parks until it wakes, so each burst's garbage stayed resident. Purged
/// at once, the controller's peak RSS at 10,000 CronJobs went from 109–129 MiB
/// to 88–92 MiB (`make bench-e2e`). `scan` is a short batch job and keeps
/// the default.
fn release_freed_memory_at_once() {
    // SAFETY: sets a process-wide option; mimalloc reads it on each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    no_transparent_huge_pages();
}

/// mimalloc asks the kernel for transparent huge pages on its arenas
/// (`madvise(MADV_HUGEPAGE)`, honoured even where the node's THP setting
/// is `madvise`, the common default). A huge page is resident whole, 2 MiB,
/// however little of it the index uses: at 10,000 CronJobs 88 of the
/// controller's 119 MiB of anonymous memory were huge pages
/// (`AnonHugePages` in smaps). The controller's heap is many small,
/// long-lived objects spread over its arenas, the worst case for that, and
/// a container's memory limit counts every byte of it. So `run` turns THP
/// off for the process: mimalloc stops asking, and `PR_SET_THP_DISABLE`
/// makes the kernel refuse huge pages for what was already asked.
fn no_transparent_huge_pages() {
    // SAFETY: sets a process-wide option; mimalloc reads it on each OS
    // allocation.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it fails harmlessly on a
    // kernel without the option (before 3.15), which then keeps its setting.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Crds => {
            print_out(&crd::crds_yaml());
            0
        }
        Command::Run(args) => {
            release_freed_memory_at_once();
            let sub = matches
                .subcommand_matches("run")
                .cloned()
                .unwrap_or_default();
            let args = match args.resolve(&sub) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if args.check_config {
                return ExitCode::from(check_config(&args));
            }
            match tokio_runtime().and_then(|rt| rt.block_on(cronwarden::controller::run(args))) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Command::Scan(args) => {
            let engine = match Engine::new(args.report.engine.settings()) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = scan::scan_paths(&engine, &args.paths, &args.baselines);
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            print_out(&scan::render(&result, args.report.output, &now));
            for e in &result.errors {
                eprintln!("error: {e}");
            }
            result.exit_code(args.report.fail_on)
        }
        Command::Audit(args) => {
            let engine = match Engine::new(args.report.engine.settings()) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = audit::offline::audit_paths(&engine, &args.baselines, &args.paths);
            print_out(&audit::offline::render(&report, args.report.output));
            if args.report.output != scan::Format::Table {
                for n in audit::offline::notes(&report) {
                    eprintln!("note: {n}");
                }
                eprintln!("{}", audit::offline::summary(&report));
            }
            for e in &report.scan.errors {
                eprintln!("error: {e}");
            }
            report.exit_code(args.report.fail_on)
        }
        Command::Baseline(BaselineCommand::Snapshot(args)) => snapshot_command(args),
    };
    ExitCode::from(code as u8)
}

/// `cronwarden run --check-config`: one line per problem, exit 0 or 2.
fn check_config(args: &cronwarden::cli::RunArgs) -> u8 {
    let problems = match tokio_runtime() {
        Ok(rt) => rt.block_on(cronwarden::controller::preflight::check_config(args)),
        Err(e) => vec![format!("cannot start the async runtime: {e}")],
    };
    for p in &problems {
        eprintln!("error: {p}");
    }
    if problems.is_empty() {
        println!(
            "ok: settings, TLS material, API server, CRDs and RBAC are what `cronwarden run` needs"
        );
        0
    } else {
        2
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn snapshot_command(args: SnapshotArgs) -> i32 {
    let opts = SnapshotOptions {
        name: args.name.clone(),
        images: args.images,
        pin_template: args.pin_template,
        required: args.required,
        managers: args.managers,
    };
    let (cronjobs, errors): (Vec<CronJobView>, Vec<String>) = if args.from_cluster {
        match tokio_runtime().and_then(|rt| rt.block_on(list_cluster(&args))) {
            Ok(c) => (c, Vec::new()),
            Err(e) => {
                eprintln!("error: reading CronJobs from the cluster: {e:#}");
                return 2;
            }
        }
    } else {
        let loaded = Loaded::read_paths(&args.paths);
        let errors = loaded.errors.iter().map(ToString::to_string).collect();
        (loaded.inventory.cronjobs, errors)
    };
    for e in &errors {
        eprintln!("error: {e}");
    }
    let refs: Vec<&CronJobView> = cronjobs.iter().collect();
    let baselines = snapshot(&refs, &opts);
    if args.cluster {
        print_out(&to_yaml(&to_cluster(baselines)));
    } else {
        print_out(&to_yaml(&baselines));
    }
    if errors.is_empty() { 0 } else { 2 }
}

/// CronJobs of the given namespaces (all when none), by label selector.
async fn list_cluster(args: &SnapshotArgs) -> anyhow::Result<Vec<CronJobView>> {
    use kube::api::{Api, ListParams};
    let client = kube::Client::try_default().await?;
    let mut lp = ListParams::default();
    if let Some(s) = &args.selector {
        lp = lp.labels(s);
    }
    let apis: Vec<Api<CronJob>> = if args.namespaces.is_empty() {
        vec![Api::all(client)]
    } else {
        args.namespaces
            .iter()
            .map(|n| Api::namespaced(client.clone(), n))
            .collect()
    };
    let mut out = Vec::new();
    for api in apis {
        out.extend(
            api.list(&lp)
                .await?
                .items
                .into_iter()
                .map(CronJobView::from),
        );
    }
    Ok(out)
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the hard-coded option indexes across mimalloc upgrades: each
    /// index must still read that option's v3 default (purge delay 1000
    /// ms, allow_thp 1 off Android), unless its environment variable set it.
    #[test]
    fn mimalloc_option_indexes() {
        for (option, env, default) in [
            (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 1000),
            (MI_OPTION_ALLOW_THP, "MIMALLOC_ALLOW_THP", 1),
        ] {
            if std::env::var_os(env).is_some() {
                continue;
            }
            // SAFETY: reads a process-wide option.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(option) },
                default,
                "{env}"
            );
        }
    }
}
