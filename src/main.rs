use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use cronwarden::cli::{BaselineCommand, Cli, Command};
use cronwarden::engine::Engine;
use cronwarden::manifest::Loaded;
use cronwarden::snapshot::{SnapshotOptions, snapshot, to_yaml};
use cronwarden::{crd, scan};

/// mimalloc: evaluation allocates many small, short-lived strings; glibc's
/// allocator doubled the engine's time in `make bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Crds => {
            print_out(&crd::crds_yaml());
            0
        }
        Command::Scan(args) => {
            let engine = match Engine::new(args.engine.settings()) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = scan::scan_paths(&engine, &args.paths);
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            print_out(&scan::render(&result, args.output, &now));
            for e in &result.errors {
                eprintln!("error: {e}");
            }
            result.exit_code(args.fail_on)
        }
        Command::Baseline(BaselineCommand::Snapshot(args)) => {
            let loaded = Loaded::read_paths(&args.paths);
            for e in &loaded.errors {
                eprintln!("error: {e}");
            }
            let cronjobs: Vec<_> = loaded.inventory.cronjobs.iter().collect();
            let opts = SnapshotOptions {
                name: args.name,
                images: args.images,
                pin_template: args.pin_template,
                required: args.required,
                managers: args.managers,
            };
            print_out(&to_yaml(&snapshot(&cronjobs, &opts)));
            if loaded.errors.is_empty() { 0 } else { 2 }
        }
    };
    ExitCode::from(code as u8)
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}
