//! The Raft log and vote in redb. Appends and votes are fsynced before openraft is told they
//! are durable: a node that acknowledged an entry still has it after a crash.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};

use std::sync::{Arc, Mutex};

use halo_core::NodeId;
use halo_core::former_leader::AppendReceipts;

use crate::TypeConfig;
use crate::db::{Database, LOG, StoreError, io as store_io, off_runtime};
use crate::leadership::leader_of;

type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Database,
    /// Node `me`'s appends taken and candidacies (`halo_core::former_leader`): every vote
    /// Raft persists passes here first.
    receipts: Arc<Mutex<AppendReceipts>>,
}

impl LogStore {
    /// Node `me`'s log, opened at `now_ms`; its receipts start from the vote it persisted last.
    pub fn new(db: Database, me: NodeId, now_ms: u64) -> Result<Self, StoreError> {
        let vote = db.get_meta::<VoteOf<TypeConfig>>(VOTE)?.map(|v| leader_of(&v)).unwrap_or_default();
        Ok(Self { db, receipts: Arc::new(Mutex::new(AppendReceipts::new(me, vote, now_ms))) })
    }

    /// The receipts, shared with the Raft append handler (`took`) and the heartbeats (`report`).
    pub fn receipts(&self) -> Arc<Mutex<AppendReceipts>> {
        self.receipts.clone()
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, io::Error> {
        let tx = self.db.db.begin_read().map_err(store_io)?;
        let table = match tx.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_io(e).into()),
        };
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in table.range::<u64>((Bound::Included(start), end)).map_err(store_io)? {
            let (_, v) = item.map_err(store_io)?;
            out.push(serde_json::from_slice(v.value()).map_err(store_io)?);
        }
        Ok(out)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        let tx = self.db.db.begin_read().map_err(store_io)?;
        let table = match tx.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store_io(e).into()),
        };
        match table.last().map_err(store_io)? {
            Some((_, v)) => {
                let entry: Entry = serde_json::from_slice(v.value()).map_err(store_io)?;
                Ok(Some(entry.log_id()))
            }
            None => Ok(None),
        }
    }

    /// Remove log entries in `range` in one fsynced transaction.
    fn remove_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<(), io::Error> {
        let tx = self.db.db.begin_write().map_err(store_io)?;
        {
            let mut table = tx.open_table(LOG).map_err(store_io)?;
            table.retain_in::<u64, _>(range, |_, _| false).map_err(store_io)?;
        }
        tx.commit().map_err(store_io)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_range(range)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(self.db.get_meta(VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogIdOf<TypeConfig>> = self.db.get_meta(PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let (db, vote) = (self.db.clone(), *vote);
        // A committed vote for this node is its leadership: recorded before it is durable, so
        // before any append under it leaves.
        if vote.is_committed() {
            self.receipts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).committed(leader_of(&vote));
        }
        off_runtime(move || Ok(db.put_meta(VOTE, &vote)?)).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        Ok(self.db.put_meta(COMMITTED, &committed)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self.db.get_meta::<Option<LogIdOf<TypeConfig>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let result = off_runtime(move || {
            let tx = db.db.begin_write().map_err(store_io)?;
            {
                let mut table = tx.open_table(LOG).map_err(store_io)?;
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry).map_err(store_io)?;
                    table.insert(entry.index(), bytes.as_slice()).map_err(store_io)?;
                }
            }
            // Default durability is Immediate: commit returns after fsync.
            tx.commit().map_err(store_io)?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.remove_range((Bound::Included(from), Bound::Unbounded))
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.db.put_meta(PURGED, &Some(log_id))?;
        self.remove_range((Bound::Unbounded, Bound::Included(log_id.index())))
    }
}
