//! `cargo xtask test`: the checks CI runs, in order, stopping at the first failure.

use crate::bench;
use crate::{cargo, describe, run};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::Instant;

/// Formatting first because it is the cheapest, then clippy, then the tests. The dev profile is
/// enough: the suite finishes well inside CI's budget on two cores without release builds.
pub fn test() -> Result<()> {
    let steps: Vec<(&str, Command)> = vec![
        (
            "formatting",
            with_args(cargo(), &["fmt", "--all", "--", "--check"]),
        ),
        (
            "clippy",
            with_args(
                cargo(),
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ),
        ("tests", with_args(cargo(), &["test", "--workspace"])),
    ];
    // The last step is the bench's smoke run (`bench --quick`), on the dev binaries the
    // tests just built: it proves the harness works end to end, not how fast nameflow is.
    let total = steps.len() + 1;
    let started = Instant::now();
    for (i, (name, mut cmd)) in steps.into_iter().enumerate() {
        eprintln!("==> [{}/{total}] {name}: {}", i + 1, describe(&cmd));
        let t = Instant::now();
        run(&mut cmd).with_context(|| format!("step {}/{total} ({name}) failed", i + 1))?;
        eprintln!("==> {name} passed in {:.0?}", t.elapsed());
    }
    match bench::skip_reason() {
        Some(reason) => eprintln!("==> [{total}/{total}] bench smoke run skipped: {reason}"),
        None => {
            eprintln!(
                "==> [{total}/{total}] bench smoke run: cargo xtask bench --quick --debug-build"
            );
            let t = Instant::now();
            bench::bench(bench::Args::smoke())
                .with_context(|| format!("step {total}/{total} (bench smoke run) failed"))?;
            eprintln!("==> bench smoke run passed in {:.0?}", t.elapsed());
        }
    }
    eprintln!("==> all {total} steps passed in {:.0?}", started.elapsed());
    Ok(())
}

fn with_args(mut cmd: Command, args: &[&str]) -> Command {
    cmd.args(args);
    cmd
}
