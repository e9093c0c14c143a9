//! `valley`: runs a Valley hub.
//!
//! Raw arguments are parsed once, by clap, into [`cli::Cli`]; every failure the binary reports
//! is one line on stderr and a non-zero exit.

mod admin;
mod admin_kms;
mod admin_residency;
mod admin_tenants;
mod aws_chunked;
mod certs;
mod cli;
mod commands;
mod cors_front;
mod credentials;
mod demo;
mod front;
mod kms;
mod listener;
mod metrics;
mod residency_commands;
mod rules_commands;
mod s3_checks;
mod serve;
mod tenant_commands;

use clap::Parser;

/// jemalloc, not glibc's malloc: glibc keeps up to a heap per thread (16 on two cores) and a
/// hub's blocking pool runs many threads, so memory freed after a burst stayed with the
/// process (a drained million-entry backlog left 360 MiB resident); jemalloc's few arenas and
/// timed purging give it back.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(*args),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Cert { command } => certs::run(command),
        cli::Command::Kms { command } => kms::run(command),
        command => run_admin(&cli.admin, command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valley: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs one admin command against the hub at `admin`.
fn run_admin(admin: &str, command: cli::Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let offline = match &command {
            cli::Command::Audit {
                command: cli::AuditCommand::Verify { file } | cli::AuditCommand::Show { file, .. },
            } => file.is_some(),
            cli::Command::Rules {
                command: cli::RulesCommand::Show { pack, .. },
            } => !pack.is_empty(),
            _ => false,
        };
        let needs_hub = !offline;
        let client = if needs_hub {
            commands::AdminClient::from_env(admin)?
        } else {
            commands::AdminClient::new(admin, "-", "-")?
        };
        match command {
            cli::Command::Bucket { command } => commands::bucket(&client, command).await,
            cli::Command::Grant { command } => commands::grant(&client, command).await,
            cli::Command::Status { json } => commands::status(&client, json).await,
            cli::Command::Hub { command } => commands::hub(&client, command).await,
            cli::Command::Audit { command } => commands::audit(&client, command).await,
            cli::Command::Residency { command } => residency_commands::run(&client, command).await,
            cli::Command::Tenant { command } => tenant_commands::tenant(&client, command).await,
            cli::Command::User { command } => tenant_commands::user(&client, command).await,
            cli::Command::Key { command } => tenant_commands::key(&client, command).await,
            cli::Command::Rules { command } => rules_commands::run(&client, command).await,
            cli::Command::Serve(_) | cli::Command::Demo(_) | cli::Command::Cert { .. } | cli::Command::Kms { .. } => {
                unreachable!("handled in main")
            }
        }
    })
}
