//! `valley`: runs a Valley hub.
//!
//! Raw arguments are parsed once, by clap, into [`cli::Cli`]; every failure the binary reports
//! is one line on stderr and a non-zero exit.

mod cli;
mod credentials;
mod front;
mod metrics;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valley: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
