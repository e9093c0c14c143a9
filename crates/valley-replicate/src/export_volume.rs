//! Export volumes: how many individuals' data each tenant has sent out of a jurisdiction this
//! calendar year, by classification. The law's thresholds count them per exporter and year
//! over all its flows, so one hub per jurisdiction counts them for the whole network
//! ([`valley_policy::rules::export_accountant`]), and an object's individuals are reserved
//! there before a byte of it leaves: a threshold holds however many hubs send.

use std::collections::BTreeMap;

use valley_policy::Grant;
use valley_policy::rules::{ExportVolume, ExportedVolumes, Sent, Volume, export_accountant};
use valley_store::{StoreError, Table};

use crate::client::PeerError;
use crate::control;
use crate::hub::Hub;
use crate::wire::ExportUse;

const PREFIX: &str = "export-volume/";

fn record_key(tenant: &str, from: &str, classification: &str) -> String {
    format!("{PREFIX}{tenant}/{from}/{classification}")
}

impl Hub {
    /// Reserves `individuals` of the object named `export` against its tenant's exports out
    /// of `grant.from`, at the jurisdiction's accountant: `Refused` (with the rule pack's
    /// reason) when the packs do not accept that volume under `grant`, `Unreachable` when the
    /// accountant cannot be asked (the transfer waits).
    pub(crate) async fn reserve_export(
        &self,
        grant: &Grant,
        classifications: &[String],
        export: &str,
        individuals: u64,
        bytes: u64,
    ) -> Result<(), PeerError> {
        let Some(accountant) = export_accountant(&self.topology, &grant.from) else {
            return Err(PeerError::Refused(format!(
                "no hub of jurisdiction {} counts its exports",
                grant.from
            )));
        };
        let request = ExportUse {
            format: ExportUse::FORMAT,
            tenant: grant.tenant.clone(),
            from: grant.from.clone(),
            grant: grant.id.clone(),
            classifications: classifications.to_vec(),
            export: export.to_owned(),
            individuals,
            bytes,
        };
        if accountant == self.id {
            return self.account_export(&self.id, request).await.map_err(PeerError::Refused);
        }
        let _: crate::wire::Outcome = self.peers.post_json(accountant, "export-use", &request).await?;
        Ok(())
    }

    /// As the accountant of `request.from`'s exports: counts the object's individuals if the
    /// rule packs accept the tenant's volume with them under the grant (an object already
    /// counted is not counted again).
    pub(crate) async fn account_export(&self, sender: &str, request: ExportUse) -> Result<(), String> {
        if request.format != ExportUse::FORMAT {
            return Err(format!(
                "export-use format {} (this hub reads {})",
                request.format,
                ExportUse::FORMAT
            ));
        }
        if export_accountant(&self.topology, &request.from) != Some(self.id.as_str()) {
            return Err(format!("hub {} does not count exports from {}", self.id, request.from));
        }
        // Data leaves a jurisdiction from a hub in it: no other hub may spend (or exhaust) what
        // its tenants may still send out of it.
        let sender_in = self.topology.hub(sender).map(|h| h.jurisdiction.as_str());
        if sender_in != Some(request.from.as_str()) {
            return Err(format!(
                "hub {sender} is not in {}: it cannot count exports from there",
                request.from
            ));
        }
        let counted = format!("export:{}:{}:{}", request.tenant, request.from, request.export);
        if self.grant_ledger.counted(&counted) {
            return Ok(());
        }
        let topology = self.topology.clone();
        let outcome = self
            .write(move |txn| {
                let grant = control::load_grants(txn)?
                    .into_iter()
                    .map(|r| r.grant)
                    .find(|g| g.id == request.grant);
                let Some(grant) = grant else {
                    return Ok(Err(format!("grant {} is unknown", request.grant)));
                };
                if grant.tenant != request.tenant || grant.from != request.from {
                    return Ok(Err(format!(
                        "grant {} is tenant {}'s from {}, not tenant {}'s from {}",
                        grant.id, grant.tenant, grant.from, request.tenant, request.from
                    )));
                }
                let today = crate::hook::today();
                let mut exported = ExportedVolumes::new();
                let mut records = BTreeMap::new();
                for classification in &request.classifications {
                    let key = record_key(&request.tenant, &request.from, classification);
                    let record: ExportVolume = match txn.get(Table::Control, key.as_bytes())? {
                        Some(raw) => serde_json::from_slice(&raw).map_err(|e| StoreError::Meta(e.to_string()))?,
                        None => ExportVolume::default(),
                    };
                    exported.insert(classification.clone(), record.this_year(today));
                    records.insert(key, record);
                }
                let volume = Volume {
                    individuals: Some(request.individuals),
                    bytes: request.bytes,
                    exported: &exported,
                };
                let judged = topology
                    .rules()
                    .judge_flow(&grant, &request.classifications, today, volume);
                if !judged.accepted {
                    return Ok(Err(judged.reason));
                }
                for (key, mut record) in records {
                    record.add(
                        today,
                        Sent {
                            individuals: request.individuals,
                            bytes: request.bytes,
                        },
                    );
                    let raw = serde_json::to_vec(&record).map_err(|e| StoreError::Meta(e.to_string()))?;
                    txn.put(Table::Control, key.as_bytes(), &raw);
                }
                Ok(Ok(()))
            })
            .await
            .map_err(|e| e.to_string())?;
        if outcome.is_ok() {
            self.grant_ledger.remember(&counted);
        }
        outcome
    }

    /// What tenants have sent out of jurisdictions this hub counts, this calendar year:
    /// (tenant, from, classification, what was sent).
    pub async fn export_volumes(&self) -> Result<Vec<(String, String, String, Sent)>, StoreError> {
        self.read(|txn| {
            let today = crate::hook::today();
            let mut out = Vec::new();
            for (key, raw) in control::scan_prefix(txn, PREFIX)? {
                let mut parts = key.splitn(3, '/');
                let (Some(tenant), Some(from), Some(classification)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let record: ExportVolume = serde_json::from_slice(&raw).map_err(|e| StoreError::Meta(e.to_string()))?;
                out.push((
                    tenant.to_owned(),
                    from.to_owned(),
                    classification.to_owned(),
                    record.this_year(today),
                ));
            }
            Ok(out)
        })
        .await
    }
}
