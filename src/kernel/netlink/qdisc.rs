//! The root qdisc of an interface, for link impairment: netem (delay,
//! jitter, loss, corruption, duplication, and rate with them), or tbf for a
//! rate limit alone (kernels without netem have it), set, replaced,
//! removed and read back over rtnetlink (tc's messages, no `tc` binary).
//! netem's options are unusual: `TCA_OPTIONS` holds a raw
//! `struct tc_netem_qopt` followed by attributes (64-bit delay and jitter,
//! rate, corruption), so they are built and read here byte by byte.

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
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
    for (kind, value) in super::attributes(raw.get(QOPT_LEN..)?) {
        let long = || -> Option<u64> { Some(u64::from_ne_bytes(value.get(..8)?.try_into().ok()?)) };
        match kind {
            TCA_NETEM_LATENCY64 => imp.delay_us = long()? / 1000,
            TCA_NETEM_JITTER64 => imp.jitter_us = long()? / 1000,
            TCA_NETEM_CORRUPT => imp.corrupt_pct = percent(word(value, 0)?),
            TCA_NETEM_RATE => imp.rate_bps = u64::from(word(value, 0)?) * 8,
            TCA_NETEM_RATE64 => imp.rate_bps = long()? * 8,
            _ => {}
        }
    }
    Some(imp)
}

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmission times itself,
/// no rate table is sent.
const LINKLAYER_ETHERNET: u8 = 1;

/// `struct tc_ratespec` for `bytes` per second.
fn ratespec(bytes: u64) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = LINKLAYER_ETHERNET;
    r[8..12].copy_from_slice(&u32::try_from(bytes).unwrap_or(u32::MAX).to_ne_bytes());
    r
}

/// The nested `TCA_OPTIONS` of a tbf qdisc limiting to `rate_bps`: a burst
/// of 4 ms of traffic (at least two full frames), a queue of 100 ms.
pub fn tbf_options(rate_bps: u64) -> Vec<u8> {
    let bytes = (rate_bps / 8).max(1);
    let burst = (bytes / 250).max(3028);
    let limit = (bytes / 10).max(2 * burst);
    let mut parms = Vec::with_capacity(36);
    parms.extend_from_slice(&ratespec(bytes));
    parms.extend_from_slice(&[0u8; 12]);
    for v in [u32::try_from(limit).unwrap_or(u32::MAX), 0, 0] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }
    let mut out = Vec::new();
    attr(&mut out, TCA_TBF_PARMS, &parms);
    attr(
        &mut out,
        TCA_TBF_BURST,
        &u32::try_from(burst).unwrap_or(u32::MAX).to_ne_bytes(),
    );
    if bytes > u64::from(u32::MAX) {
        attr(&mut out, TCA_TBF_RATE64, &bytes.to_ne_bytes());
    }
    out
}

/// The impairment (a rate) that tbf options as the kernel reports them
/// describe.
fn parse_tbf_options(raw: &[u8]) -> Option<Impairment> {
    let mut rate = None;
    for (kind, value) in super::attributes(raw) {
        match kind {
            TCA_TBF_PARMS if value.len() >= 12 => {
                rate = Some(u64::from(u32::from_ne_bytes(value[8..12].try_into().ok()?)));
            }
            TCA_TBF_RATE64 if value.len() >= 8 => {
                rate = Some(u64::from_ne_bytes(value[..8].try_into().ok()?));
            }
            _ => {}
        }
    }
    Some(Impairment {
        rate_bps: rate? * 8,
        ..Impairment::default()
    })
}

/// A rate limit alone is a tbf qdisc; anything else is netem.
fn uses_tbf(imp: &Impairment) -> bool {
    imp.rate_bps > 0
        && Impairment {
            rate_bps: 0,
            ..imp.clone()
        }
        .is_none()
}

fn root(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::ROOT;
    msg
}

/// The name nsnet gives its loss classifier, with the threshold in it:
/// what `check` reads back.
const LOSS_PREFIX: &str = "nsnet-loss-";

fn clsact(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::CLSACT;
    msg.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    msg
}

fn egress_filter(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_EGRESS,
    };
    // Priority 1, every protocol (ETH_P_ALL, in network order).
    msg.header.info = (1 << 16) | u32::from(0x0003u16.to_be());
    msg
}

impl Handle {
    /// Drops what interface `index` sends with probability `threshold /
    /// 2^32`: a clsact qdisc with the bpf classifier `prog` at egress.
    pub fn set_loss_filter(
        &mut self,
        index: u32,
        ifname: &str,
        prog: std::os::fd::BorrowedFd,
        threshold: u32,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut q = clsact(index);
        q.attributes.push(TcAttribute::Kind("clsact".into()));
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(q),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx {
                op: "adding a clsact qdisc to",
                target: ifname,
            },
        )?;
        let mut f = egress_filter(index);
        f.attributes.push(TcAttribute::Kind("bpf".into()));
        f.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(format!(
                "{LOSS_PREFIX}{threshold}"
            ))),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(f),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx {
                op: "adding the loss classifier to",
                target: ifname,
            },
        )
    }

    /// Removes the clsact qdisc of interface `index`, and its classifiers.
    pub fn clear_loss_filter(&mut self, index: u32, ifname: &str) -> Result<()> {
        self.request(
            RouteNetlinkMessage::DelQueueDiscipline(clsact(index)),
            0,
            Ctx {
                op: "removing the clsact qdisc of",
                target: ifname,
            },
        )
    }

    /// The threshold of nsnet's loss classifier on interface `index`, if
    /// there is one.
    pub fn loss_filter(&mut self, index: u32, ifname: &str) -> Result<Option<u32>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetTrafficFilter(egress_filter(index)),
            Ctx {
                op: "listing the egress classifiers of",
                target: ifname,
            },
        );
        let replies = match replies {
            // No clsact qdisc: no classifier either.
            Err(e) if matches!(e.errno(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {
                return Ok(None)
            }
            other => other?,
        };
        for reply in replies {
            let RouteNetlinkMessage::NewTrafficFilter(m) = reply else {
                continue;
            };
            for a in &m.attributes {
                let TcAttribute::Options(opts) = a else {
                    continue;
                };
                for o in opts {
                    if let TcOption::Bpf(TcFilterBpfOption::ProgName(n)) = o {
                        if let Some(t) = n.strip_prefix(LOSS_PREFIX).and_then(|t| t.parse().ok()) {
                            return Ok(Some(t));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Makes a netem (or, for a rate alone, tbf) qdisc with `imp` the root
    /// qdisc of interface `index`, replacing whatever root qdisc it had.
    pub fn set_impairment(&mut self, index: u32, ifname: &str, imp: &Impairment) -> Result<()> {
        let (kind, options, op) = if uses_tbf(imp) {
            ("tbf", tbf_options(imp.rate_bps), "setting a tbf qdisc on")
        } else {
            (KIND, netem_options(imp), "setting a netem qdisc on")
        };
        let mut msg = root(index);
        msg.attributes.push(TcAttribute::Kind(kind.into()));
        msg.attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx { op, target: ifname },
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

    /// The impairment at the root of interface `index`, if its root qdisc
    /// is netem or tbf.
    pub fn impairment(&mut self, index: u32, ifname: &str) -> Result<Option<Impairment>> {
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
            let kind = m.attributes.iter().find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.as_str()),
                _ => None,
            });
            let parse: fn(&[u8]) -> Option<Impairment> = match kind {
                Some(KIND) => parse_netem_options,
                Some("tbf") => parse_tbf_options,
                _ => return Ok(None),
            };
            for a in &m.attributes {
                if let TcAttribute::Options(opts) = a {
                    for o in opts {
                        if let TcOption::Other(nla) = o {
                            let mut raw = vec![0u8; netlink_packet_core::Nla::value_len(nla)];
                            netlink_packet_core::Nla::emit_value(nla, &mut raw);
                            return Ok(parse(&raw));
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
        let rate = Impairment {
            rate_bps: 10_000_000,
            ..Impairment::default()
        };
        assert!(uses_tbf(&rate));
        assert_eq!(parse_tbf_options(&tbf_options(10_000_000)), Some(rate));
    }
}
