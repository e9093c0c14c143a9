//! The in-memory [`MetaStore`]: a `BTreeMap` behind a lock, for tests and as the reference the
//! embedded store is checked against.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::{StoreError, StoreResult};
use crate::meta::{Entry, MetaStore, Overlay, ReadTxn, Table, WriteJob};

type Map = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemMeta {
    map: Mutex<Map>,
}

impl MemMeta {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

struct MapView(Map);

impl ReadTxn for MapView {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.0.get(&(table, key.to_vec())).cloned())
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Entry>> {
        Ok(self
            .0
            .range((table, start.to_vec())..)
            .take_while(|((t, k), _)| *t == table && end.is_none_or(|end| k.as_slice() < end))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl MetaStore for MemMeta {
    fn snapshot(&self) -> StoreResult<Box<dyn ReadTxn + '_>> {
        let map = self.map.lock().map_err(|_| StoreError::Meta("lock poisoned".into()))?;
        Ok(Box::new(MapView(map.clone())))
    }

    fn write(&self, job: WriteJob) -> StoreResult<()> {
        let mut map = self.map.lock().map_err(|_| StoreError::Meta("lock poisoned".into()))?;
        let view = MapView(std::mem::take(&mut *map));
        let mut overlay = Overlay::new(&view);
        let result = crate::meta::run_job(job, &mut overlay);
        let writes = if result.is_ok() {
            overlay.into_writes()
        } else {
            BTreeMap::new()
        };
        let MapView(mut restored) = view;
        for ((table, key), value) in writes {
            match value {
                Some(v) => restored.insert((table, key), v),
                None => restored.remove(&(table, key)),
            };
        }
        *map = restored;
        result
    }
}
