//! [`PolicyCache`]: the policies read by the S3 front's per-request residency check, so that
//! check costs a map lookup instead of a store read.

use std::collections::HashMap;
use std::sync::Mutex;

use valley_policy::PlacementPolicy;

/// Entries are dropped whenever this process applies a policy change (the only way policy
/// records change), and reloaded on the next miss. The number counts invalidations, so a read
/// that raced with a change is not cached.
#[derive(Default)]
pub(crate) struct PolicyCache {
    cache: Mutex<(u64, HashMap<String, PlacementPolicy>)>,
}

impl PolicyCache {
    /// `bucket`'s policy from the cache, else from `load` (kept unless the cache was
    /// invalidated meanwhile).
    pub(crate) async fn get_or_load(
        &self,
        bucket: &str,
        load: impl Future<Output = Result<PlacementPolicy, String>>,
    ) -> Result<PlacementPolicy, String> {
        let (generation, cached) = match self.cache.lock() {
            Ok(c) => (c.0, c.1.get(bucket).cloned()),
            Err(_) => (u64::MAX, None),
        };
        if let Some(policy) = cached {
            return Ok(policy);
        }
        let policy = load.await?;
        if let Ok(mut cache) = self.cache.lock()
            && cache.0 == generation
        {
            cache.1.insert(bucket.to_owned(), policy.clone());
        }
        Ok(policy)
    }

    /// Drops every cached policy (a policy or floor changed); reads racing with this are not
    /// cached, by the generation count.
    pub(crate) fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.0 += 1;
            cache.1.clear();
        }
    }
}
