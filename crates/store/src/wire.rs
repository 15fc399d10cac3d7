//! How Raft's messages travel between nodes, and how big they may be.
//!
//! Appends and votes are JSON. An append is cut to about `APPEND_BATCH_BYTES` by the sender
//! (the follower then reports how far it got, and openraft sends the rest), so a log of large
//! entries replicates in bounded requests. A snapshot travels as its bytes, behind a small
//! JSON header, not as a JSON array of numbers (3.5 times the size); the receiver still reads
//! the JSON form an older sender uses.

use std::time::Duration;

use openraft::alias::{LogIdOf, SnapshotMetaOf, VoteOf};
use openraft::raft::AppendEntriesRequest;

use crate::TypeConfig;
use serde::{Deserialize, Serialize};

/// What a sender puts in one append when entries are large (one entry alone may exceed it).
pub const APPEND_BATCH_BYTES: usize = 4 << 20;
/// Largest command the API takes (its body limit); a log entry is about that size at most.
pub const MAX_COMMAND_BYTES: usize = 2 << 20;
/// Largest append a node accepts: a batch, plus an entry that alone exceeded it, with room.
pub const MAX_APPEND_BYTES: usize = APPEND_BATCH_BYTES + 4 * MAX_COMMAND_BYTES;
/// Largest snapshot a node accepts, and so the largest cluster state halo can replicate.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 20;
/// A forwarded leader request carries one command.
pub const MAX_FORWARDED_BYTES: usize = 2 * MAX_COMMAND_BYTES;

/// The time a transfer of `bytes` may take beyond the RPC's own deadline, at a throughput no
/// working network between cluster nodes is below (debug builds included).
pub fn transfer_allowance(bytes: usize) -> Duration {
    const BYTES_PER_SECOND: u64 = 4 << 20;
    Duration::from_millis(bytes as u64 * 1000 / BYTES_PER_SECOND)
}

/// An append cut to fit: the request to send and, if entries were left out, the id of the
/// last one sent (what the follower has matched once it accepts).
pub(crate) struct FittedAppend {
    pub(crate) request: AppendEntriesRequest<TypeConfig>,
    pub(crate) cut_after: Option<LogIdOf<TypeConfig>>,
}

/// Keep the longest prefix of `request.entries` whose JSON fits in `budget` bytes, at least
/// one entry. `encoded_len` is the size of the whole request as JSON.
pub(crate) fn fit_append(
    mut request: AppendEntriesRequest<TypeConfig>,
    encoded_len: usize,
    budget: usize,
) -> Result<FittedAppend, serde_json::Error> {
    if encoded_len <= budget || request.entries.len() <= 1 {
        return Ok(FittedAppend { request, cut_after: None });
    }
    let mut used = 0;
    let mut keep = 0;
    for entry in &request.entries {
        let size = serde_json::to_vec(entry)?.len() + 1;
        if keep > 0 && used + size > budget {
            break;
        }
        used += size;
        keep += 1;
    }
    if keep == request.entries.len() {
        return Ok(FittedAppend { request, cut_after: None });
    }
    request.entries.truncate(keep);
    let cut_after = request.entries.last().map(|e| e.log_id);
    debug_assert!(cut_after.is_some(), "a cut append keeps at least one entry");
    Ok(FittedAppend { request, cut_after })
}

pub const SNAPSHOT_CONTENT_TYPE: &str = "application/vnd.halo.snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"HSN1";

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: VoteOf<TypeConfig>,
    meta: SnapshotMetaOf<TypeConfig>,
}

/// `HSN1`, the header's length (u32, big-endian), the header (JSON: vote and meta), the data.
pub(crate) fn encode_snapshot(
    vote: &VoteOf<TypeConfig>,
    meta: &SnapshotMetaOf<TypeConfig>,
    data: &[u8],
) -> Result<Vec<u8>, WireError> {
    let header = serde_json::to_vec(&SnapshotHeader { vote: *vote, meta: meta.clone() })?;
    let len = u32::try_from(header.len()).map_err(|_| WireError::HeaderTooLarge(header.len()))?;
    let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 4 + header.len() + data.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a halo snapshot (no HSN1 mark)")]
    NotASnapshot,
    #[error("snapshot header of {0} bytes runs past the end of the body")]
    Truncated(usize),
    #[error("snapshot header of {0} bytes is too large to frame")]
    HeaderTooLarge(usize),
    #[error("snapshot header: {0}")]
    Header(#[from] serde_json::Error),
}

pub(crate) type SnapshotParts = (VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>);

pub(crate) fn decode_snapshot(body: &[u8]) -> Result<SnapshotParts, WireError> {
    let rest = body.strip_prefix(SNAPSHOT_MAGIC).ok_or(WireError::NotASnapshot)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(WireError::Truncated(0))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(WireError::Truncated(len));
    }
    let (header, data) = rest.split_at(len);
    let header: SnapshotHeader = serde_json::from_slice(header)?;
    Ok((header.vote, header.meta, data.to_vec()))
}

/// The JSON form of a snapshot that senders before the binary form used.
pub(crate) fn decode_json_snapshot(body: &[u8]) -> Result<SnapshotParts, WireError> {
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use openraft::alias::EntryOf;
    use openraft::{EntryPayload, Vote};

    use super::*;

    fn entry(index: u64, bytes: usize) -> EntryOf<TypeConfig> {
        let command =
            halo_core::command::Command::SetProperties { properties: vec![("description".into(), "x".repeat(bytes))] };
        EntryOf::<TypeConfig> {
            log_id: LogIdOf::<TypeConfig>::new(openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 }, index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn append(entries: Vec<EntryOf<TypeConfig>>) -> (AppendEntriesRequest<TypeConfig>, usize) {
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let len = serde_json::to_vec(&request).expect("encodes").len();
        (request, len)
    }

    #[test]
    fn a_large_append_is_cut_after_the_entries_that_fit_and_a_huge_entry_goes_alone() {
        let (request, len) = append((1..=10).map(|i| entry(i, 1000)).collect());
        let fitted = fit_append(request, len, 3500).expect("fits");
        assert_eq!(fitted.request.entries.len(), 3);
        assert_eq!(fitted.cut_after.map(|l| l.index), Some(3));

        let (request, len) = append(vec![entry(1, 10_000), entry(2, 10)]);
        let fitted = fit_append(request, len, 3500).expect("fits");
        assert_eq!(fitted.request.entries.len(), 1, "one entry always goes");
        assert_eq!(fitted.cut_after.map(|l| l.index), Some(1));

        let (request, len) = append((1..=3).map(|i| entry(i, 10)).collect());
        let fitted = fit_append(request, len, 3500).expect("fits");
        assert_eq!((fitted.request.entries.len(), fitted.cut_after), (3, None));
    }

    proptest::proptest! {
        /// Whatever a peer sends as a snapshot decodes or is refused with a reason.
        #[test]
        fn any_bytes_as_a_snapshot_frame_decode_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut framed = SNAPSHOT_MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode_snapshot(&bytes);
            let _ = decode_snapshot(&framed);
            let _ = decode_json_snapshot(&bytes);
        }
    }

    #[test]
    fn a_snapshot_travels_as_its_bytes_and_a_bad_frame_is_named() {
        let vote = Vote::new_committed(3, 2);
        let meta = SnapshotMetaOf::<TypeConfig>::default();
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let body = encode_snapshot(&vote, &meta, &data).expect("encodes");
        assert!(body.len() < data.len() + 300, "{} bytes for {}", body.len(), data.len());
        let (v, m, d) = decode_snapshot(&body).expect("decodes");
        assert_eq!((v, m, d), (vote, meta.clone(), data.clone()));
        assert!(matches!(decode_snapshot(b"nope"), Err(WireError::NotASnapshot)));
        assert!(matches!(decode_snapshot(&body[..20]), Err(WireError::Truncated(_))));
        let old = serde_json::to_vec(&(vote, meta.clone(), data.clone())).expect("json");
        assert_eq!(decode_json_snapshot(&old).expect("decodes"), (vote, meta, data));
    }
}
