//! `valley rules show|check`: the rule packs, and the recorded grants judged by them.

use anyhow::Context;

use crate::admin::{ExportCount, GrantJudgement};
use crate::cli::RulesCommand;
use crate::commands::AdminClient;

pub async fn run(admin: &AdminClient, command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Show {
            from,
            to,
            classification,
        } => {
            let book = valley_policy::RuleBook::shipped();
            println!("rule packs: {}", book.versions().join(", "));
            let rules = book.rules_for(from.as_deref(), to.as_deref(), classification.as_deref());
            if rules.is_empty() {
                println!("no rule regulates this flow: any recorded grant covering it carries it");
            }
            for (pack, rule) in rules {
                println!(
                    "\n[{}] {} data from {} to {}: only under {}",
                    pack.name,
                    rule.classification,
                    rule.from.join(", "),
                    rule.to.join(", "),
                    rule.bases.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
                );
                for basis in &rule.require_reference {
                    println!("  a {} grant must name its reference", basis.name());
                }
                for (basis, days) in &rule.max_validity_days {
                    println!("  a {} grant is valid at most {days} days", basis.name());
                }
                for (basis, limit) in &rule.individuals_below {
                    println!(
                        "  {} carries it only while the exporter's individuals this calendar year (objects declare them) stay below {limit}",
                        basis.name()
                    );
                }
                println!("  source: {}", rule.source);
            }
            for pack in &book.packs {
                for never in &pack.never {
                    let asked = classification.as_deref().is_none_or(|c| c == never.classification);
                    if asked {
                        println!(
                            "\n[{}] {} data never leaves {} for {}\n  source: {}",
                            pack.name,
                            never.classification,
                            never.from.join(", "),
                            never.to.join(", "),
                            never.source
                        );
                    }
                }
            }
        }
        RulesCommand::Check { json } => {
            let body = admin.call(http::Method::GET, "rules-check", Vec::new()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let judged: Vec<GrantJudgement> = serde_json::from_slice(&body).context("reading the hub's answer")?;
            if judged.is_empty() {
                println!("no grant recorded");
            }
            for j in judged {
                println!(
                    "{} {} ({} -> {}, {}): {}",
                    if j.judgement.accepted { "ACCEPTED" } else { "REFUSED " },
                    j.grant.id,
                    j.grant.from,
                    j.grant.to,
                    j.grant.basis.name(),
                    j.judgement.reason
                );
            }
        }
        RulesCommand::Volumes { json } => {
            let body = admin.call(http::Method::GET, "rules-volumes", Vec::new()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let counts: Vec<ExportCount> = serde_json::from_slice(&body).context("reading the hub's answer")?;
            if counts.is_empty() {
                println!("this hub counts no exports (ask the first hub by id of the jurisdiction data leaves)");
            }
            for c in counts {
                println!(
                    "{} from {}: {} individuals' {} data this year",
                    c.tenant, c.from, c.individuals, c.classification
                );
            }
        }
    }
    Ok(())
}
