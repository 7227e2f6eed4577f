//! The canonical (signed) byte layouts of the roster body. bincode is positional, so each
//! format version has its own struct: format 1 is exactly the layout signed before rotation
//! existed (old signed rosters and golden vectors still verify); format 2 adds each member's
//! current signing key and previous keys.

use super::{
    node_id_serde, node_id_vec_serde, AuthorityPublicKey, CountryCode, EncryptionKey, Member,
    NodeId, PreviousKeys, Role, Roster, Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(crate) struct MemberV1 {
    #[serde(with = "node_id_serde")]
    node_id: NodeId,
    country: CountryCode,
    authority_name: String,
    role: Role,
    encryption_key: EncryptionKey,
    addresses: Vec<String>,
    #[serde(with = "node_id_vec_serde")]
    relays: Vec<NodeId>,
    valid_from: Timestamp,
    valid_until: Timestamp,
    on_duty_contact: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PreviousKeysV2 {
    #[serde(with = "node_id_serde")]
    signing_key: NodeId,
    encryption_key: EncryptionKey,
    valid_until: Timestamp,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MemberV2 {
    base: MemberV1,
    #[serde(with = "node_id_serde")]
    signing_key: NodeId,
    previous_keys: Vec<PreviousKeysV2>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RosterWire<M> {
    network: String,
    serial: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
    threshold: u8,
    authorities: Vec<AuthorityPublicKey>,
    members: Vec<M>,
}

pub(crate) type RosterV1 = RosterWire<MemberV1>;
pub(crate) type RosterV2 = RosterWire<MemberV2>;

impl From<&Member> for MemberV1 {
    fn from(member: &Member) -> Self {
        MemberV1 {
            node_id: member.node_id,
            country: member.country,
            authority_name: member.authority_name.clone(),
            role: member.role,
            encryption_key: member.encryption_key,
            addresses: member.addresses.clone(),
            relays: member.relays.clone(),
            valid_from: member.valid_from,
            valid_until: member.valid_until,
            on_duty_contact: member.on_duty_contact.clone(),
        }
    }
}

impl From<MemberV1> for Member {
    fn from(member: MemberV1) -> Self {
        Member {
            node_id: member.node_id,
            signing_key: None,
            previous_keys: Vec::new(),
            country: member.country,
            authority_name: member.authority_name,
            role: member.role,
            encryption_key: member.encryption_key,
            addresses: member.addresses,
            relays: member.relays,
            valid_from: member.valid_from,
            valid_until: member.valid_until,
            on_duty_contact: member.on_duty_contact,
        }
    }
}

impl From<&Member> for MemberV2 {
    fn from(member: &Member) -> Self {
        MemberV2 {
            base: MemberV1::from(member),
            signing_key: member.current_signing_key(),
            previous_keys: member
                .previous_keys
                .iter()
                .map(|previous| PreviousKeysV2 {
                    signing_key: previous.signing_key,
                    encryption_key: previous.encryption_key,
                    valid_until: previous.valid_until,
                })
                .collect(),
        }
    }
}

impl From<MemberV2> for Member {
    fn from(wire: MemberV2) -> Self {
        let mut member = Member::from(wire.base);
        // One content, one encoding: "no rotation" is always `None`.
        member.signing_key = (wire.signing_key != member.node_id).then_some(wire.signing_key);
        member.previous_keys = wire
            .previous_keys
            .into_iter()
            .map(|previous| PreviousKeys {
                signing_key: previous.signing_key,
                encryption_key: previous.encryption_key,
                valid_until: previous.valid_until,
            })
            .collect();
        member
    }
}

impl<'a, M: From<&'a Member>> From<&'a Roster> for RosterWire<M> {
    fn from(roster: &'a Roster) -> Self {
        RosterWire {
            network: roster.network.clone(),
            serial: roster.serial,
            issued_at: roster.issued_at,
            expires_at: roster.expires_at,
            threshold: roster.threshold,
            authorities: roster.authorities.clone(),
            members: roster.members.iter().map(M::from).collect(),
        }
    }
}

impl<M: Into<Member>> From<RosterWire<M>> for Roster {
    fn from(wire: RosterWire<M>) -> Self {
        Roster {
            network: wire.network,
            serial: wire.serial,
            issued_at: wire.issued_at,
            expires_at: wire.expires_at,
            threshold: wire.threshold,
            authorities: wire.authorities,
            members: wire.members.into_iter().map(Into::into).collect(),
        }
    }
}
