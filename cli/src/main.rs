//! `oxbeam`: the command-line entry point to Oxbeam.

use clap::{Parser, Subcommand};

/// Oxbeam: a portable data-processing system, wire-compatible with Apache Beam.
#[derive(Debug, Parser)]
#[command(name = "oxbeam", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the Beam URNs and constants this build knows (from the protos'
    /// beam_urn / beam_constant options), as `path<TAB>value`.
    Urns {
        /// Only entries whose path or value contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Urns { filter } => {
            for (path, value) in oxbeam_model::urns::ALL {
                if filter
                    .as_deref()
                    .is_none_or(|f| path.contains(f) || value.contains(f))
                {
                    println!("{path}\t{value}");
                }
            }
        }
    }
    Ok(())
}
