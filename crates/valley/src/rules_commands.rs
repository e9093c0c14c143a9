//! `valley rules show|check`: the rule packs, and the recorded grants judged by them.

use anyhow::Context;

use crate::admin::{ExportCount, GrantJudgement, LoadedRules};
use crate::cli::RulesCommand;
use crate::commands::AdminClient;

pub async fn run(admin: &AdminClient, command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Show {
            pack,
            from,
            to,
            classification,
        } => {
            // The packs the hub judges by; a lone hub has no borders to judge, so the packs
            // this build ships are shown.
            let asked = if pack.is_empty() {
                admin.call(http::Method::GET, "rules", Vec::new()).await
            } else {
                Err(anyhow::anyhow!("files given"))
            };
            let book = match asked {
                Err(_) if !pack.is_empty() => {
                    let mut texts = Vec::new();
                    for path in &pack {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read rule pack {}", path.display()))?;
                        texts.push((path.display().to_string(), text));
                    }
                    let book = valley_policy::RuleBook::parse_files(&texts)?;
                    println!("rule packs: {} (hash {})", book.versions().join(", "), book.hash());
                    book
                }
                Ok(body) => {
                    let loaded: LoadedRules = serde_json::from_slice(&body).context("reading the hub's answer")?;
                    println!(
                        "rule packs: {} (hash {})",
                        loaded.book.versions().join(", "),
                        loaded.hash
                    );
                    loaded.book
                }
                Err(e) if e.to_string().contains("runs alone") => {
                    let book = valley_policy::RuleBook::shipped();
                    println!(
                        "rule packs: {} (shipped with this build; this hub runs alone)",
                        book.versions().join(", ")
                    );
                    book
                }
                Err(e) => return Err(e),
            };
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
                for (basis, kinds) in &rule.require_companions {
                    println!(
                        "  a {} grant must carry its {} record (--companion KIND=REFERENCE)",
                        basis.name(),
                        kinds.join(", ")
                    );
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
                for (basis, limit) in &rule.bytes_below {
                    println!(
                        "  {} carries it only while the exporter's bytes this calendar year stay below {limit}",
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
            let Some(judged) = fetch::<Vec<GrantJudgement>>(admin, "rules-check", json).await? else {
                return Ok(());
            };
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
            let Some(counts) = fetch::<Vec<ExportCount>>(admin, "rules-volumes", json).await? else {
                return Ok(());
            };
            if counts.is_empty() {
                println!("this hub counts no exports (ask the first hub by id of the jurisdiction data leaves)");
            }
            for c in counts {
                println!(
                    "{} from {}: {} individuals' {} data this year ({} bytes)",
                    c.tenant, c.from, c.individuals, c.classification, c.bytes
                );
            }
        }
    }
    Ok(())
}

/// GETs admin `route`: with `json`, prints the hub's answer as it is and answers `None`;
/// otherwise answers it read.
async fn fetch<T: serde::de::DeserializeOwned>(
    admin: &AdminClient,
    route: &str,
    json: bool,
) -> anyhow::Result<Option<T>> {
    let body = admin.call(http::Method::GET, route, Vec::new()).await?;
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&body).context("reading the hub's answer")?))
}
