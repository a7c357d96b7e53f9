//! `oxbeam`: the command-line entry point to Oxbeam.

use clap::{Parser, Subcommand};

/// Oxbeam: a portable, Beam-compatible data-processing system.
#[derive(Debug, Parser)]
#[command(name = "oxbeam", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the Beam URNs this build of Oxbeam knows, one per line.
    Urns,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Urns => {
            println!("{}", oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO);
        }
    }
    Ok(())
}
