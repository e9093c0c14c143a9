//! A change of rule packs, noticed at start: the grants the new packs no longer accept are
//! reported (logged and audited, one record each) and carry nothing from then on, since
//! `decide()` skips them; none is deleted, so going back to the earlier packs restores them.
//! A hub upgraded from a release that kept no record of its packs reports every grant the
//! packs refuse (say, a standard contract recorded without its impact assessment).

use valley_audit::AuditKind;
use valley_policy::RuleBook;
use valley_store::{StoreError, Table};

use crate::control;
use crate::hub::{Hub, HubError};

/// Where the packs a hub last judged by are kept (their JSON), to compare at the next start.
const LOADED_KEY: &[u8] = b"rules/loaded";

/// A grant the new packs refuse although the earlier ones accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidated {
    pub grant: String,
    pub reason: String,
}

impl Hub {
    /// Compares the packs this hub now judges by with those it judged by before; when they
    /// differ, reports every grant they invalidate (audited) and records the new packs.
    /// Answers the grants invalidated.
    pub async fn note_rule_packs(&self) -> Result<Vec<Invalidated>, HubError> {
        let loaded = self.topology.rules().clone();
        let before: Option<RuleBook> = self
            .read(|txn| {
                txn.get(Table::Control, LOADED_KEY)?
                    .map(|raw| serde_json::from_slice(&raw).map_err(|e| StoreError::Meta(e.to_string())))
                    .transpose()
            })
            .await?;
        if before.as_ref().is_some_and(|b| b.hash() == loaded.hash()) {
            return Ok(Vec::new());
        }
        let grants = self.read(control::grants).await?;
        let today = crate::hook::today();
        // Without a record of the packs judged by before (a first start, or an upgrade from a
        // release that kept none), every grant the packs refuse is reported.
        let invalidated: Vec<Invalidated> = grants
            .iter()
            .filter(|g| before.as_ref().is_none_or(|b| b.judge(g, today).accepted))
            .filter_map(|g| {
                let now = loaded.judge(g, today);
                (!now.accepted).then(|| Invalidated {
                    grant: g.id.clone(),
                    reason: now.reason,
                })
            })
            .collect();
        let from = before
            .as_ref()
            .map_or_else(|| "none recorded".to_owned(), |b| b.versions().join(", "));
        if before.is_some() || !invalidated.is_empty() {
            let detail = format!(
                "rule packs changed from {from} to {}: {} recorded grants no longer accepted",
                loaded.versions().join(", "),
                invalidated.len()
            );
            tracing::warn!("{detail}");
            self.auditor
                .record(self.auditor.event(AuditKind::PolicyChange, detail))
                .await;
        }
        for gone in &invalidated {
            let detail = format!(
                "grant {} is no longer accepted by the rule packs and carries nothing (kept, not deleted): {}",
                gone.grant, gone.reason
            );
            tracing::warn!("{detail}");
            self.auditor
                .record(
                    self.auditor
                        .event(AuditKind::PolicyChange, detail)
                        .with_grant(gone.grant.clone())
                        .with_allowed(false),
                )
                .await;
        }
        let raw = serde_json::to_vec(&loaded).map_err(|e| StoreError::Meta(e.to_string()))?;
        self.write(move |txn| {
            txn.put(Table::Control, LOADED_KEY, &raw);
            Ok(())
        })
        .await?;
        Ok(invalidated)
    }
}
