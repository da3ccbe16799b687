//! `owo-vmtest`: the project's kernel matrix (`make vm-test`). `guest` runs inside a QEMU guest
//! booted on one kernel and checks the real owod there; `report` runs on the host and turns the
//! guests' console logs into a kernel × monitor table. Fetching kernels and booting them is
//! `scripts/vm-test.sh`.

mod guest;
mod records;
mod report;
mod verdict;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about)]
enum Cli {
    /// Inside the guest: run owod and every scenario, print one VMTEST line per check.
    Guest(guest::GuestArgs),
    /// On the host: the kernel × monitor table from the guests' console logs; exit 1 if a cell
    /// failed or a kernel did not finish.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Guest(args) => guest::run(args).map(|()| ExitCode::SUCCESS),
        Cli::Report(args) => report::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("owo-vmtest: {e:#}");
        ExitCode::FAILURE
    })
}
