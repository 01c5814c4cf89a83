//! The `ignis` binary: `ignis serve` runs the platform; every other command is a client.

mod http_server;
mod serve;

use std::process::ExitCode;

use clap::Parser;
use ignis_cli::{Cli, Command};

fn main() -> ExitCode {
    // The sandbox re-executes this binary to set up an instance; those modes come before
    // any argument parsing or runtime start, as the init must stay single-threaded.
    let mut args = std::env::args();
    match args.nth(1).as_deref() {
        Some(ignis_sandbox::INIT_ARG) => ignis_sandbox::init::run(&args.collect::<Vec<_>>()),
        Some(ignis_sandbox::PROBE_ARG) => return ExitCode::SUCCESS,
        Some(ignis_sandbox::MOUNT_ARG) => ignis_sandbox::mount::run(&args.collect::<Vec<_>>()),
        _ => {}
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => match ignis_cli::run_client(&cli) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
