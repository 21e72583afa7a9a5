//! The root qdisc of an interface: a netem qdisc for link impairment, set,
//! replaced, removed and read back over rtnetlink (tc's messages, no `tc`
//! binary). netem's options are unusual: `TCA_OPTIONS` holds a raw
//! `struct tc_netem_qopt` followed by attributes (64-bit delay and jitter,
//! rate, corruption), so they are built and read here byte by byte.

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Ctx, Handle, Result};
use crate::model::lab::Impairment;

const TCA_OPTIONS: u16 = 2;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
/// `sizeof(struct tc_netem_qopt)`: latency, limit, loss, gap, duplicate,
/// jitter, six u32.
const QOPT_LEN: usize = 24;
/// Packets netem holds (tc's default).
const LIMIT: u32 = 1000;
const KIND: &str = "netem";

/// A percentage as the kernel's probability, where u32::MAX is 100 %.
fn probability(pct: f64) -> u32 {
    ((pct / 100.0) * f64::from(u32::MAX)).round() as u32
}

fn percent(p: u32) -> f64 {
    // Two decimals are all a user gives and all tc prints.
    ((f64::from(p) / f64::from(u32::MAX)) * 10000.0).round() / 100.0
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// The payload of `TCA_OPTIONS` for `imp` (message building, no I/O).
pub fn netem_options(imp: &Impairment) -> Vec<u8> {
    let delay_ns = imp.delay_us.saturating_mul(1000);
    let jitter_ns = imp.jitter_us.saturating_mul(1000);
    // The legacy fields count 64 ns ticks; the 64-bit attributes below
    // are exact and win.
    let ticks = |ns: u64| u32::try_from(ns >> 6).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(96);
    for v in [
        ticks(delay_ns),
        LIMIT,
        probability(imp.loss_pct),
        0,
        probability(imp.duplicate_pct),
        ticks(jitter_ns),
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    attr(
        &mut out,
        TCA_NETEM_LATENCY64,
        &(delay_ns as i64).to_ne_bytes(),
    );
    attr(
        &mut out,
        TCA_NETEM_JITTER64,
        &(jitter_ns as i64).to_ne_bytes(),
    );
    if imp.corrupt_pct > 0.0 {
        let mut v = probability(imp.corrupt_pct).to_ne_bytes().to_vec();
        v.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut out, TCA_NETEM_CORRUPT, &v);
    }
    if imp.rate_bps > 0 {
        let bytes = imp.rate_bps / 8;
        // struct tc_netem_rate: rate (bytes/s, u32), packet_overhead,
        // cell_size, cell_overhead; beyond 4 GB/s the 64-bit attribute.
        let mut v = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .to_ne_bytes()
            .to_vec();
        v.extend_from_slice(&[0u8; 12]);
        attr(&mut out, TCA_NETEM_RATE, &v);
        if bytes > u64::from(u32::MAX) {
            attr(&mut out, TCA_NETEM_RATE64, &bytes.to_ne_bytes());
        }
    }
    out
}

/// The impairment a netem `TCA_OPTIONS` payload describes.
pub fn parse_netem_options(raw: &[u8]) -> Option<Impairment> {
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let mut imp = Impairment {
        delay_us: u64::from(word(raw, 0)?) * 64 / 1000,
        loss_pct: percent(word(raw, 8)?),
        duplicate_pct: percent(word(raw, 16)?),
        jitter_us: u64::from(word(raw, 20)?) * 64 / 1000,
        ..Impairment::default()
    };
    let mut at = QOPT_LEN;
    while at + 4 <= raw.len() {
        let len = usize::from(u16::from_ne_bytes([raw[at], raw[at + 1]]));
        let kind = u16::from_ne_bytes([raw[at + 2], raw[at + 3]]) & 0x3fff;
        if len < 4 || at + len > raw.len() {
            break;
        }
        let value = &raw[at + 4..at + len];
        let long = || -> Option<u64> { Some(u64::from_ne_bytes(value.get(..8)?.try_into().ok()?)) };
        match kind {
            TCA_NETEM_LATENCY64 => imp.delay_us = long()? / 1000,
            TCA_NETEM_JITTER64 => imp.jitter_us = long()? / 1000,
            TCA_NETEM_CORRUPT => imp.corrupt_pct = percent(word(value, 0)?),
            TCA_NETEM_RATE => imp.rate_bps = u64::from(word(value, 0)?) * 8,
            TCA_NETEM_RATE64 => imp.rate_bps = long()? * 8,
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Some(imp)
}

fn root(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::ROOT;
    msg
}

impl Handle {
    /// Makes a netem qdisc with `imp` the root qdisc of interface `index`,
    /// replacing whatever root qdisc it had.
    pub fn set_netem(&mut self, index: u32, ifname: &str, imp: &Impairment) -> Result<()> {
        let mut msg = root(index);
        msg.attributes.push(TcAttribute::Kind(KIND.into()));
        msg.attributes.push(TcAttribute::Other(DefaultNla::new(
            TCA_OPTIONS,
            netem_options(imp),
        )));
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx {
                op: "setting a netem qdisc on",
                target: ifname,
            },
        )
    }

    /// Removes the root qdisc of interface `index` (the default comes back).
    pub fn clear_root_qdisc(&mut self, index: u32, ifname: &str) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelQueueDiscipline(root(index)),
            0,
            Ctx {
                op: "removing the root qdisc of",
                target: ifname,
            },
        )
    }

    /// The netem impairment at the root of interface `index`, if its root
    /// qdisc is netem.
    pub fn netem(&mut self, index: u32, ifname: &str) -> Result<Option<Impairment>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::with_index(index as i32)),
            Ctx {
                op: "listing the qdiscs of",
                target: ifname,
            },
        )?;
        for reply in replies {
            let RouteNetlinkMessage::NewQueueDiscipline(m) = reply else {
                continue;
            };
            if m.header.index != index as i32 || m.header.parent != TcHandle::ROOT {
                continue;
            }
            let is_netem = m
                .attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == KIND));
            if !is_netem {
                return Ok(None);
            }
            for a in &m.attributes {
                if let TcAttribute::Options(opts) = a {
                    for o in opts {
                        if let TcOption::Other(nla) = o {
                            let mut raw = vec![0u8; netlink_packet_core::Nla::value_len(nla)];
                            netlink_packet_core::Nla::emit_value(nla, &mut raw);
                            return Ok(parse_netem_options(&raw));
                        }
                    }
                }
            }
            return Ok(Some(Impairment::default()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_options_read_back_as_written() {
        let imp = Impairment {
            delay_us: 50_000,
            jitter_us: 5_000,
            loss_pct: 20.0,
            rate_bps: 10_000_000,
            corrupt_pct: 0.1,
            duplicate_pct: 1.0,
        };
        let raw = netem_options(&imp);
        assert_eq!(raw.len() % 4, 0);
        assert_eq!(parse_netem_options(&raw), Some(imp));
        assert_eq!(probability(100.0), u32::MAX);
    }
}
