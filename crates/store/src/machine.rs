//! The state machine: applies committed commands to [`ClusterState`] and builds snapshots.
//!
//! The applied state is kept in memory for readers and written to redb after every applied
//! batch, together with the id of the last applied entry, so a restarted agent resumes from
//! there instead of replaying the whole log.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use halo_core::command::CommandResult;
use halo_core::events::Event;
use halo_core::state::ClusterState;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::TypeConfig;
use crate::db::{Database, io as store_io, off_runtime};

const APPLIED: &str = "applied";
/// Event numbers are `log index * EVENTS_PER_ENTRY + i`: the same on every node.
pub(crate) const EVENTS_PER_ENTRY: u64 = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
    /// Shared with readers: a reader holds the state it was handed while apply builds the next.
    state: Arc<ClusterState>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Database,
    applied: Arc<RwLock<Applied>>,
    changed: Arc<watch::Sender<u64>>,
}

/// The applied state, even if a writer panicked while holding the lock: writers only ever
/// replace the whole value in one assignment, so what is there is always a state that was
/// applied.
fn read_applied(applied: &RwLock<Applied>) -> std::sync::RwLockReadGuard<'_, Applied> {
    applied.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read access to the applied cluster state, for the API and the manager.
#[derive(Clone)]
pub struct StateReader {
    db: Database,
    applied: Arc<RwLock<Applied>>,
    changed: watch::Receiver<u64>,
}

impl StateReader {
    /// The applied state. Never an empty one in its place: a reader that saw no roles would
    /// have its node stop every role it runs.
    pub fn state(&self) -> Arc<ClusterState> {
        read_applied(&self.applied).state.clone()
    }

    /// Index of the last applied log entry (0 if none).
    pub fn applied_index(&self) -> u64 {
        read_applied(&self.applied).last_applied.as_ref().map_or(0, |l| l.index)
    }

    /// Size of the stored snapshot's data; `None` without a snapshot.
    pub fn snapshot_bytes(&self) -> Result<Option<u64>, crate::StoreError> {
        self.db.snapshot_bytes()
    }

    /// Events recorded on this node: after `after`, or the newest `limit`; oldest first.
    pub fn events(&self, after: Option<u64>, limit: usize) -> Result<Vec<Event>, crate::StoreError> {
        self.db.events(after, limit)
    }

    /// Resolves when the applied state changes: true, or false once the state machine is gone
    /// (it never changes again).
    pub async fn changed(&mut self) -> bool {
        self.changed.changed().await.is_ok()
    }
}

impl StateMachine {
    pub fn open(db: Database) -> Result<Self, crate::StoreError> {
        let applied: Applied = db.get_meta(APPLIED)?.unwrap_or_default();
        let (tx, _) = watch::channel(0);
        Ok(Self { db, applied: Arc::new(RwLock::new(applied)), changed: Arc::new(tx) })
    }

    pub fn reader(&self) -> StateReader {
        StateReader { db: self.db.clone(), applied: self.applied.clone(), changed: self.changed.subscribe() }
    }

    fn persist(&self, applied: &Applied) -> Result<(), io::Error> {
        Ok(self.db.put_meta(APPLIED, applied)?)
    }

    fn persist_with_events(&self, applied: &Applied, events: &[Event]) -> Result<(), io::Error> {
        Ok(self.db.put_meta_with_events(APPLIED, applied, events)?)
    }

    /// Make `applied` what readers see, then wake them (in that order: a reader woken early
    /// would read the old state and sleep through the change).
    fn publish(&self, applied: Applied) -> Result<(), io::Error> {
        *self.applied.write().map_err(|_| lock_poisoned())? = applied;
        self.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    fn snapshot_of(applied: &Applied) -> Result<(SnapshotMetaOf<TypeConfig>, Vec<u8>), io::Error> {
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
        };
        Ok((meta, serde_json::to_vec(&applied.state).map_err(store_io)?))
    }
}

fn lock_poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Self::SnapshotData>, io::Error> {
        let (meta, data) = {
            let applied = self.applied.read().map_err(|_| lock_poisoned())?;
            Self::snapshot_of(&applied)?
        };
        self.db.put_snapshot(&meta, &data)?;
        Ok(SnapshotOf::<TypeConfig, _> { meta, snapshot: Cursor::new(data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let applied = self.applied.read().map_err(|_| lock_poisoned())?;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut work = self.applied.read().map_err(|_| lock_poisoned())?.clone();
        let mut responders = Vec::new();
        let mut events = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            work.last_applied = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(command) => {
                    let before = work.state.clone();
                    let result = Arc::make_mut(&mut work.state).apply(command);
                    let at = command.timestamp_ms().unwrap_or(0);
                    let mut new =
                        halo_core::events::diff(&before, &work.state, at, entry.log_id.index * EVENTS_PER_ENTRY);
                    new.truncate(EVENTS_PER_ENTRY as usize);
                    if let halo_core::command::Command::Attributed { by, .. } = command {
                        new.iter_mut().for_each(|event| event.by = Some(by.clone()));
                    }
                    events.extend(new);
                    result
                }
                EntryPayload::Membership(membership) => {
                    work.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), membership.clone());
                    CommandResult::Done
                }
            };
            if let Some(responder) = responder {
                responders.push((responder, result));
            }
        }
        // Persist before answering: a client told "done" must find it after a restart even if
        // the log was compacted in between.
        let this = self.clone();
        let work = off_runtime(move || this.persist_with_events(&work, &events).map(|()| work)).await?;
        self.publish(work)?;
        for (responder, result) in responders {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&data).map_err(store_io)?;
        let applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state: Arc::new(state),
        };
        self.db.put_snapshot(meta, &data)?;
        self.persist(&applied)?;
        self.publish(applied)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        let stored: Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)> = self.db.get_snapshot()?;
        Ok(stored.map(|(meta, data)| SnapshotOf::<TypeConfig, _> { meta, snapshot: Cursor::new(data) }))
    }
}
