//! `chronik-docs [--check] [PATH]`: rewrites the generated sections of the operations guide
//! (default docs/operations.md), or with `--check` exits 1 if they are out of date.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "chronik-docs",
    about = "Regenerate the reference sections of docs/operations.md"
)]
struct Args {
    /// Do not write; exit 1 if the file differs from a fresh rendering.
    #[arg(long)]
    check: bool,
    #[arg(default_value = "docs/operations.md")]
    path: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chronik-docs: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let doc = std::fs::read_to_string(&args.path)
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    let fresh = chronik_docs::render(&doc)?;
    if fresh == doc {
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        eprintln!(
            "chronik-docs: {} is out of date with the code; run `make docs`",
            args.path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    std::fs::write(&args.path, fresh)
        .with_context(|| format!("cannot write {}", args.path.display()))?;
    println!("chronik-docs: rewrote {}", args.path.display());
    Ok(ExitCode::SUCCESS)
}
