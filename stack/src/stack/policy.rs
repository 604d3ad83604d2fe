//! The stack's side of the packet policy (`crate::policy`): the checks of packets that
//! start a flow (after the demux found no connection for them, so an established flow
//! never pays for the rules), the answer to a rejected one, the probes the scan
//! detector hears about, and the check of flows our own applications open.

use std::net::IpAddr;

use super::Stack;
use crate::policy::rules::{PacketInfo, RejectWith};
use crate::policy::scan::ProbeKind;
use crate::policy::Decision;
use crate::time::Instant;
use crate::wire::{DropReason, TcpFlags};

impl Stack {
    /// What the policy says about an inbound packet that starts a flow; a drop or a
    /// reject is counted (`DropReason::Filtered`) and a reject answered with `reject`.
    /// Returns whether the packet goes on. Without a policy: yes, at no cost.
    pub(super) fn policy_admits(
        &mut self,
        now: Instant,
        info: &PacketInfo,
        knockable: bool,
        reject: impl FnOnce(&mut Stack, RejectWith),
    ) -> bool {
        let Some(policy) = self.policy.as_deref_mut() else { return true };
        match policy.check_inbound(now, info, knockable) {
            Decision::Accept => true,
            Decision::Drop => {
                self.count_drop(DropReason::Filtered, "dropped by the policy");
                false
            }
            Decision::Reject(with) => {
                self.count_drop(DropReason::Filtered, "rejected by the policy");
                reject(self, with);
                false
            }
        }
    }

    /// Whether the policy lets one of our applications open a flow (`info.dir` is
    /// `Out`).
    pub(super) fn policy_admits_outbound(&mut self, info: &PacketInfo) -> bool {
        match self.policy.as_deref_mut() {
            None => true,
            Some(p) => p.check_outbound(info) == Decision::Accept,
        }
    }

    /// A packet for which there is no socket: a probe, for the scan detector.
    pub(super) fn policy_probe(&mut self, now: Instant, src: IpAddr, port: u16, kind: ProbeKind) {
        if let Some(p) = self.policy.as_deref_mut() {
            p.probe(now, src, port, kind);
        }
    }
}

/// What kind of probe a TCP segment for no connection is (nmap's names); `None` for a
/// RST, which no scan sends and a normal peer does after we forgot a connection.
pub(super) fn tcp_probe_kind(f: TcpFlags) -> Option<ProbeKind> {
    const FIN_PSH_URG: u8 = 0x01 | 0x08 | 0x20;
    if f.rst() {
        return None;
    }
    Some(match f.0 & 0x3f {
        0 => ProbeKind::Null,
        0x01 => ProbeKind::Fin,
        FIN_PSH_URG => ProbeKind::Xmas,
        x if x & 0x12 == 0x02 => ProbeKind::Syn,
        _ => ProbeKind::OtherTcp,
    })
}
