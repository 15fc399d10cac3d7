//! The heartbeat datagrams, authenticated with the cluster's heartbeat key.
//!
//! Two kinds share one fixed layout (big endian): magic `HALO` | version u8 | kind u8 |
//! cluster id hash 8 bytes | sender node id u64 | network index u8 | sequence u64 |
//! sent at ms u64 | lease holder u64 | lease ms u64 | committed index u64 | vote term u64 |
//! vote node u64 | last leader term u64 | last leader node u64 | last append age ms u64 |
//! HMAC-SHA256 32 bytes.
//! A heartbeat uses the lease holder and lease ms fields for its echo (the sequence of the
//! last heartbeat it heard from the receiver on this network, and how many microseconds ago),
//! which gives every node the round trip to every peer on every network without extra
//! packets (see [`crate::round_trip`]); it leaves the committed index zero. A lease grant is the leader's answer to one
//! heartbeat: it echoes that heartbeat's sequence and send time, so the holder can date its
//! lease from when *it sent* the heartbeat (see the safety model), and carries the leader's
//! commit index: the holder acts on its lease only once it has applied that much of the log,
//! so a node waking from a freeze never acts on decisions that were already replaced. Fixed size, no variable
//! fields: a malformed or forged packet is simply dropped.
//!
//! A heartbeat also carries its sender's voter report ([`crate::former_leader`]): its vote
//! (term 0: no report), the last leader before it whose appends it took, and how long before
//! sending the last one arrived. A grant leaves these zero.
//!
//! Wire version 5 (from 4): the voter report was added. Version 4 (from 3) made a sequence
//! carry the sender's incarnation in its high 32 bits, and receivers insist on freshness
//! ([`endpoint`]). A node of one version does not hear a node of another (the length and the
//! version byte differ), so a cluster moves to a new wire version all at once.
//!
//! What a node does with these datagrams is [`Endpoint`], shared by the agent and the
//! simulator.

mod endpoint;

pub use endpoint::{Endpoint, Leadership, Outgoing, View, first_sequence};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::NodeId;
use crate::former_leader::{LastAppend, LeaderId, VoterReport};

const MAGIC: &[u8; 4] = b"HALO";
const WIRE_VERSION: u8 = 5;
const KIND_HEARTBEAT: u8 = 1;
const KIND_LEASE_GRANT: u8 = 2;
const BODY_LEN: usize = 4 + 1 + 1 + 8 + 8 + 1 + 8 + 8 + 8 + 8 + 8 + 5 * 8;
pub const DATAGRAM_LEN: usize = BODY_LEN + 32;

/// "I am alive", sent by every node to every peer on every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub from: NodeId,
    pub network: u8,
    pub sequence: u64,
    pub sent_at_ms: u64,
    /// The echo of the receiver's last heartbeat on this network (0: none heard yet).
    pub echo: Echo,
    /// The sender's word about the term it left, for a new leader ([`crate::former_leader`]).
    pub report: Option<VoterReport>,
}

/// "Your heartbeat `sequence` reached me `held_us` microseconds before I sent this."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Echo {
    pub sequence: u64,
    pub held_us: u64,
}

/// The leader's answer to a heartbeat of `to`: "you may run roles for `lease_ms` from the
/// moment you sent heartbeat `sequence`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub from: NodeId,
    pub to: NodeId,
    pub network: u8,
    pub sequence: u64,
    pub sent_at_ms: u64,
    pub lease_ms: u64,
    /// The leader's commit index when it granted.
    pub committed_index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    Heartbeat(Heartbeat),
    LeaseGrant(LeaseGrant),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("datagram has {0} bytes, expected {DATAGRAM_LEN}")]
    Length(usize),
    #[error("not a halo heartbeat (bad magic, version or kind)")]
    Foreign,
    #[error("heartbeat from another cluster")]
    OtherCluster,
    #[error("heartbeat signature does not verify")]
    BadSignature,
    #[error("the cluster's heartbeat key is not hex")]
    BadKey,
}

/// The heartbeat keys one node holds: the cluster's current key and, for `grace_us` after it
/// changed, the previous one. A key changes when a node is removed (it knew the old one);
/// nodes apply that change a moment apart, and the grace keeps them hearing each other
/// meanwhile, while the removed node's key stops working once it ends.
#[derive(Clone)]
pub struct KeyRing {
    cluster_id: String,
    key_hex: String,
    current: HeartbeatCodec,
    previous: Option<(HeartbeatCodec, u64)>,
}

impl KeyRing {
    /// Follow the cluster's id and key (hex) as the database has them at `now_us`; the codec
    /// to send with.
    pub fn follow<'a>(
        ring: &'a mut Option<KeyRing>,
        cluster_id: &str,
        key_hex: &str,
        now_us: u64,
        grace_us: u64,
    ) -> Result<&'a HeartbeatCodec, HeartbeatError> {
        let unchanged = ring.as_ref().is_some_and(|r| r.is_for(cluster_id, key_hex));
        if !unchanged {
            let key = hex::decode(key_hex).map_err(|_| HeartbeatError::BadKey)?;
            let current = HeartbeatCodec::new(&key, cluster_id);
            let previous = ring
                .take()
                .filter(|old| old.cluster_id == cluster_id)
                .map(|old| (old.current, now_us.saturating_add(grace_us)));
            *ring =
                Some(KeyRing { cluster_id: cluster_id.to_string(), key_hex: key_hex.to_string(), current, previous });
        }
        match ring {
            Some(ring) => Ok(&ring.current),
            None => Err(HeartbeatError::BadKey),
        }
    }

    /// Whether this ring holds `key_hex` of cluster `cluster_id` as its current key.
    pub fn is_for(&self, cluster_id: &str, key_hex: &str) -> bool {
        self.cluster_id == cluster_id && self.key_hex == key_hex
    }

    /// The codec to send with: the current key.
    pub fn sending(&self) -> &HeartbeatCodec {
        &self.current
    }

    /// Decode with the current key, or with the previous one while its grace lasts.
    pub fn decode(&self, bytes: &[u8], now_us: u64) -> Result<Datagram, HeartbeatError> {
        match self.current.decode(bytes) {
            Err(HeartbeatError::BadSignature) => match &self.previous {
                Some((previous, until_us)) if now_us < *until_us => previous.decode(bytes),
                _ => Err(HeartbeatError::BadSignature),
            },
            decoded => decoded,
        }
    }
}

/// Keyed with the cluster's heartbeat key; also knows the cluster id it accepts.
#[derive(Clone)]
pub struct HeartbeatCodec {
    key: Vec<u8>,
    cluster_tag: [u8; 8],
}

impl HeartbeatCodec {
    pub fn new(key: &[u8], cluster_id: &str) -> Self {
        let digest = Sha256::digest(cluster_id.as_bytes());
        let mut cluster_tag = [0u8; 8];
        cluster_tag.copy_from_slice(&digest[..8]);
        Self { key: key.to_vec(), cluster_tag }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    pub fn encode(&self, datagram: &Datagram) -> [u8; DATAGRAM_LEN] {
        let (kind, from, network, sequence, sent_at_ms, to, lease_ms, committed, report) = match *datagram {
            Datagram::Heartbeat(h) => {
                let report = h.report.map_or([0; 5], |r| {
                    [r.vote.term, r.vote.node, r.last.leader.term, r.last.leader.node, r.last.age_ms]
                });
                (
                    KIND_HEARTBEAT,
                    h.from,
                    h.network,
                    h.sequence,
                    h.sent_at_ms,
                    h.echo.sequence,
                    h.echo.held_us,
                    0,
                    report,
                )
            }
            Datagram::LeaseGrant(g) => (
                KIND_LEASE_GRANT,
                g.from,
                g.network,
                g.sequence,
                g.sent_at_ms,
                g.to,
                g.lease_ms,
                g.committed_index,
                [0; 5],
            ),
        };
        let mut out = [0u8; DATAGRAM_LEN];
        out[0..4].copy_from_slice(MAGIC);
        out[4] = WIRE_VERSION;
        out[5] = kind;
        out[6..14].copy_from_slice(&self.cluster_tag);
        out[14..22].copy_from_slice(&from.to_be_bytes());
        out[22] = network;
        out[23..31].copy_from_slice(&sequence.to_be_bytes());
        out[31..39].copy_from_slice(&sent_at_ms.to_be_bytes());
        out[39..47].copy_from_slice(&to.to_be_bytes());
        out[47..55].copy_from_slice(&lease_ms.to_be_bytes());
        out[55..63].copy_from_slice(&committed.to_be_bytes());
        for (i, field) in report.iter().enumerate() {
            out[63 + 8 * i..71 + 8 * i].copy_from_slice(&field.to_be_bytes());
        }
        let mut mac = self.mac();
        mac.update(&out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Datagram, HeartbeatError> {
        if bytes.len() != DATAGRAM_LEN {
            return Err(HeartbeatError::Length(bytes.len()));
        }
        if &bytes[0..4] != MAGIC || bytes[4] != WIRE_VERSION {
            return Err(HeartbeatError::Foreign);
        }
        if bytes[6..14] != self.cluster_tag {
            return Err(HeartbeatError::OtherCluster);
        }
        let mut mac = self.mac();
        mac.update(&bytes[..BODY_LEN]);
        mac.verify_slice(&bytes[BODY_LEN..]).map_err(|_| HeartbeatError::BadSignature)?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let (from, network, sequence, sent_at_ms) = (u64_at(14), bytes[22], u64_at(23), u64_at(31));
        match bytes[5] {
            KIND_HEARTBEAT => {
                let echo = Echo { sequence: u64_at(39), held_us: u64_at(47) };
                let report = (u64_at(63) != 0).then(|| VoterReport {
                    vote: LeaderId { term: u64_at(63), node: u64_at(71) },
                    last: LastAppend { leader: LeaderId { term: u64_at(79), node: u64_at(87) }, age_ms: u64_at(95) },
                });
                Ok(Datagram::Heartbeat(Heartbeat { from, network, sequence, sent_at_ms, echo, report }))
            }
            KIND_LEASE_GRANT => Ok(Datagram::LeaseGrant(LeaseGrant {
                from,
                to: u64_at(39),
                network,
                sequence,
                sent_at_ms,
                lease_ms: u64_at(47),
                committed_index: u64_at(55),
            })),
            _ => Err(HeartbeatError::Foreign),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let codec = HeartbeatCodec::new(b"k", "cluster-1");
        let echo = Echo { sequence: 41, held_us: 350 };
        let hb =
            Datagram::Heartbeat(Heartbeat { from: 7, network: 1, sequence: 42, sent_at_ms: 123, echo, report: None });
        let bytes = codec.encode(&hb);
        assert_eq!(codec.decode(&bytes), Ok(hb));
        for age_ms in [0, 950, u64::MAX] {
            let last = LastAppend { leader: LeaderId { term: 8, node: 3 }, age_ms };
            let report = Some(VoterReport { vote: LeaderId { term: 9, node: 2 }, last });
            let hb =
                Datagram::Heartbeat(Heartbeat { from: 7, network: 1, sequence: 43, sent_at_ms: 124, echo, report });
            assert_eq!(codec.decode(&codec.encode(&hb)), Ok(hb));
        }
        let grant = Datagram::LeaseGrant(LeaseGrant {
            from: 1,
            to: 7,
            network: 1,
            sequence: 42,
            sent_at_ms: 123,
            lease_ms: 2000,
            committed_index: 99,
        });
        assert_eq!(codec.decode(&codec.encode(&grant)), Ok(grant));

        let mut tampered = bytes;
        tampered[14] ^= 1;
        assert_eq!(codec.decode(&tampered), Err(HeartbeatError::BadSignature));
        // A heartbeat cannot be turned into a grant without the key.
        let mut promoted = bytes;
        promoted[5] = KIND_LEASE_GRANT;
        assert_eq!(codec.decode(&promoted), Err(HeartbeatError::BadSignature));
        assert_eq!(HeartbeatCodec::new(b"other", "cluster-1").decode(&bytes), Err(HeartbeatError::BadSignature));
        assert_eq!(HeartbeatCodec::new(b"k", "cluster-2").decode(&bytes), Err(HeartbeatError::OtherCluster));
        assert_eq!(codec.decode(&bytes[..10]), Err(HeartbeatError::Length(10)));
        assert_eq!(codec.decode(&[0u8; DATAGRAM_LEN]), Err(HeartbeatError::Foreign));
    }

    #[test]
    fn after_a_key_change_the_old_key_is_heard_for_the_grace_only() {
        let beat = Datagram::Heartbeat(Heartbeat {
            from: 2,
            network: 0,
            sequence: 1,
            sent_at_ms: 1,
            echo: Echo { sequence: 0, held_us: 0 },
            report: None,
        });
        let mut ring = None;
        let old = KeyRing::follow(&mut ring, "c", "aa", 0, 1_000).expect("hex key").clone();
        let new = KeyRing::follow(&mut ring, "c", "bb", 5_000, 1_000).expect("hex key").clone();
        let ring = ring.expect("ring");
        assert_eq!(ring.decode(&new.encode(&beat), 5_500), Ok(beat));
        assert_eq!(ring.decode(&old.encode(&beat), 5_500), Ok(beat), "within the grace");
        assert_eq!(ring.decode(&old.encode(&beat), 6_000), Err(HeartbeatError::BadSignature), "after it");
        let mut other = Some(ring);
        assert!(KeyRing::follow(&mut other, "c", "not hex", 7_000, 1_000).is_err());
    }
}
