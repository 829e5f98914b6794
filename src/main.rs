//! The `nameflow` command: a thin layer that turns flags into validated settings and runs the
//! engine. Errors are printed with their chain and give a non-zero exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nameflow: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
