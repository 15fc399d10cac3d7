//! The redb file and its tables. Opened once per agent; shared by the log and the state machine.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// Raft log entries by index, JSON encoded.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Named values: vote, committed, purged, applied state, format version (JSON), and the
/// snapshot: its meta (JSON) and its data (the bytes as they are, see `FORMAT`).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOT_META: &str = "snapshot.meta";
const SNAPSHOT_DATA: &str = "snapshot.data";
/// Format 1 kept the snapshot as one JSON value `{meta, data}`, its bytes a JSON array of
/// numbers (about 3.5 times their size).
const SNAPSHOT_V1: &str = "snapshot";

/// Events by sequence number, JSON encoded; the newest `EVENTS_KEPT` are kept.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_KEPT: u64 = 10_000;

pub(crate) const FORMAT_KEY: &str = "format_version";
/// 2: the snapshot's data is stored as raw bytes. A format-1 database is converted when it
/// is opened (one transaction); a halo that knows only format 1 refuses a format-2 file by
/// name instead of misreading it.
const FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open cluster database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("cluster database {path} has format version {found}, this halo understands {FORMAT}")]
    Format { path: String, found: u32 },
    #[error("cluster database I/O: {0}")]
    Io(String),
}

const CACHE_BYTES: usize = 4 << 20;

#[derive(Clone)]
pub struct Database {
    pub(crate) db: Arc<redb::Database>,
}

impl Database {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err =
            |e: &dyn std::fmt::Display| StoreError::Open { path: path.display().to_string(), reason: e.to_string() };
        // The cluster database is small; redb's default cache (1 GiB, grown on use) would hold
        // every page ever touched. A few MiB keeps an idle agent small.
        let db = redb::Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| open_err(&e))?;
        let this = Self { db: Arc::new(db) };
        match this.get_meta::<u32>(FORMAT_KEY)? {
            None => this.put_meta(FORMAT_KEY, &FORMAT)?,
            Some(FORMAT) => {}
            Some(1) => this.upgrade_from_1()?,
            Some(found) => return Err(StoreError::Format { path: path.display().to_string(), found }),
        }
        Ok(this)
    }

    /// Format 1 to 2: the snapshot's bytes move out of their JSON array.
    fn upgrade_from_1(&self) -> Result<(), StoreError> {
        #[derive(serde::Deserialize)]
        struct SnapshotV1 {
            meta: serde_json::Value,
            data: Vec<u8>,
        }
        let old: Option<SnapshotV1> = self.get_meta(SNAPSHOT_V1)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(META).map_err(io)?;
            if let Some(old) = old {
                let meta = serde_json::to_vec(&old.meta).map_err(io)?;
                table.insert(SNAPSHOT_META, meta.as_slice()).map_err(io)?;
                table.insert(SNAPSHOT_DATA, old.data.as_slice()).map_err(io)?;
                table.remove(SNAPSHOT_V1).map_err(io)?;
            }
            table.insert(FORMAT_KEY, serde_json::to_vec(&FORMAT).map_err(io)?.as_slice()).map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    /// Replace the stored snapshot: its meta and its bytes, in one transaction.
    pub(crate) fn put_snapshot<M: serde::Serialize>(&self, meta: &M, data: &[u8]) -> Result<(), StoreError> {
        let meta = serde_json::to_vec(meta).map_err(io)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(META).map_err(io)?;
            table.insert(SNAPSHOT_META, meta.as_slice()).map_err(io)?;
            table.insert(SNAPSHOT_DATA, data).map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    /// The stored snapshot, if any: its meta and its bytes.
    pub(crate) fn get_snapshot<M: serde::de::DeserializeOwned>(&self) -> Result<Option<(M, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let (Some(meta), Some(data)) = (table.get(SNAPSHOT_META).map_err(io)?, table.get(SNAPSHOT_DATA).map_err(io)?)
        else {
            return Ok(None);
        };
        Ok(Some((serde_json::from_slice(meta.value()).map_err(io)?, data.value().to_vec())))
    }

    /// Size in bytes of the stored snapshot's data.
    pub fn snapshot_bytes(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        Ok(table.get(SNAPSHOT_DATA).map_err(io)?.map(|d| d.value().len() as u64))
    }

    pub(crate) fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        match table.get(key).map_err(io)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(io)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(io)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(META).map_err(io)?;
            table.insert(key, bytes.as_slice()).map_err(io)?;
        }
        tx.commit().map_err(io)
    }
}

impl Database {
    /// Store a meta value and new events in one transaction (one fsync).
    pub(crate) fn put_meta_with_events<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        events: &[halo_core::events::Event],
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(io)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(META).map_err(io)?;
            table.insert(key, bytes.as_slice()).map_err(io)?;
            if let Some(last) = events.last() {
                let mut log = tx.open_table(EVENTS).map_err(io)?;
                for event in events {
                    log.insert(event.seq, serde_json::to_vec(event).map_err(io)?.as_slice()).map_err(io)?;
                }
                // Sequence numbers grow by at most EVENTS_PER_ENTRY per log entry.
                let horizon = last.seq.saturating_sub(EVENTS_KEPT * crate::machine::EVENTS_PER_ENTRY);
                if horizon > 0 {
                    log.retain_in::<u64, _>(..horizon, |_, _| false).map_err(io)?;
                }
            }
        }
        tx.commit().map_err(io)
    }

    /// Events with a sequence number above `after` (oldest first, at most `limit`), or without
    /// `after` the newest `limit` events.
    pub fn events(&self, after: Option<u64>, limit: usize) -> Result<Vec<halo_core::events::Event>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let table = match tx.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let decode = |item: Result<(redb::AccessGuard<u64>, redb::AccessGuard<&[u8]>), redb::StorageError>| {
            let (_, value) = item.map_err(io)?;
            serde_json::from_slice(value.value()).map_err(io)
        };
        match after {
            Some(after) => table.range(after.saturating_add(1)..).map_err(io)?.take(limit).map(decode).collect(),
            None => {
                let mut newest: Vec<_> =
                    table.iter().map_err(io)?.rev().take(limit).map(decode).collect::<Result<_, _>>()?;
                newest.reverse();
                Ok(newest)
            }
        }
    }
}

/// Run a committing (fsyncing) database operation off the async runtime, so a slow disk
/// delays only the write that waits for it, never the heartbeats beside it.
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

pub(crate) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_1_snapshot_is_converted_to_raw_bytes_when_opened() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cluster.redb");
        let data: Vec<u8> = (0..=255).collect();
        {
            let db = Database { db: Arc::new(redb::Database::create(&path).expect("create")) };
            db.put_meta(FORMAT_KEY, &1u32).expect("format");
            db.put_meta(SNAPSHOT_V1, &serde_json::json!({ "meta": { "last_log_id": 7 }, "data": data }))
                .expect("old snapshot");
        }
        let db = Database::open(&path).expect("opens and converts");
        let (meta, bytes): (serde_json::Value, Vec<u8>) = db.get_snapshot().expect("read").expect("a snapshot");
        assert_eq!(meta, serde_json::json!({ "last_log_id": 7 }));
        assert_eq!(bytes, data);
        assert_eq!(db.snapshot_bytes().expect("size"), Some(256));
        assert_eq!(db.get_meta::<u32>(FORMAT_KEY).expect("format"), Some(FORMAT));
        assert!(db.get_meta::<serde_json::Value>(SNAPSHOT_V1).expect("read").is_none());
        drop(db);
        // A database from a newer halo is refused by name, not misread.
        {
            let db = Database::open(&path).expect("reopens");
            db.put_meta(FORMAT_KEY, &(FORMAT + 1)).expect("format");
        }
        let refused = Database::open(&path).err().expect("refused");
        assert!(refused.to_string().contains("format version 3"), "{refused}");
    }
}
