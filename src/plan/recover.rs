//! Finishing an interrupted command. A command writes its intent (the state
//! before and the state it aims at) before touching the kernel, and removes
//! it once the new state is recorded. If nsnet is killed in between, the
//! next command finds the intent and makes the host match what both states
//! agree on: everything that differed (half made, or half removed) is torn
//! down, keeping going past pieces that are not there. A later `up` or
//! command then builds again whatever is wanted.

use super::attach::plan_disconnect;
use super::network::{plan_remove, restore_sysctls};
use super::{without_firewall, Op};
use crate::model::{Attachment, Network, State};

/// A network's own settings, without its attachments.
fn settings(n: &Network) -> Network {
    Network {
        attachments: Default::default(),
        ..n.clone()
    }
}

/// The state both sides agree on, and the teardown steps for the rest.
pub fn recover(before: &State, after: &State) -> (State, Vec<Op>) {
    let mut kept = State {
        version: before.version,
        ..State::default()
    };
    let mut doomed_networks: Vec<&Network> = Vec::new();
    let mut doomed_attachments: Vec<(&Network, &std::sync::Arc<Attachment>)> = Vec::new();
    let names: std::collections::BTreeSet<&String> = before
        .networks
        .keys()
        .chain(after.networks.keys())
        .collect();
    for name in names {
        match (before.networks.get(name), after.networks.get(name)) {
            (Some(b), Some(a)) if b.same_settings(a) => {
                let mut net = settings(b);
                for att in &b.attachments {
                    if a.attachments.contains(att) {
                        net.attachments.push(att.clone());
                    } else {
                        doomed_attachments.push((b, att));
                    }
                }
                for att in &a.attachments {
                    if !b.attachments.contains(att) {
                        doomed_attachments.push((a, att));
                    }
                }
                kept.networks.insert(name.clone(), net);
            }
            (b, a) => doomed_networks.extend(b.into_iter().chain(a)),
        }
    }
    for (k, v) in before.sysctls.iter().chain(&after.sysctls) {
        kept.sysctls.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (ns, conf) in &before.resolv_confs {
        if after.resolv_confs.get(ns) == Some(conf) {
            kept.resolv_confs.insert(ns.clone(), conf.clone());
        }
    }

    // Lab objects first: the attachments' teardown below then sees which
    // namespaces links still use.
    let mut ops = super::lab::recover_lab(before, after, &mut kept);
    // Each doomed version is torn down against the kept state plus itself,
    // so that namespaces still used by kept attachments stay.
    for (net, att) in doomed_attachments {
        let mut scratch = kept.clone();
        let mut version = scratch
            .networks
            .get(&net.name)
            .cloned()
            .unwrap_or_else(|| settings(net));
        version.attachments.push(att.clone());
        scratch.networks.insert(net.name.clone(), version);
        if let Ok((_, more)) =
            plan_disconnect(&scratch, &net.name, std::slice::from_ref(&att.namespace))
        {
            ops.extend(without_firewall(more));
        }
    }
    for net in doomed_networks {
        let mut scratch = kept.clone();
        scratch.networks.insert(net.name.clone(), net.clone());
        if let Ok((_, more)) = plan_remove(&scratch, &net.name, true) {
            ops.extend(without_firewall(more).filter(|o| !matches!(o, Op::SetSysctl { .. })));
        }
    }
    for ns in before.resolv_confs.keys().chain(after.resolv_confs.keys()) {
        if !kept.resolv_confs.contains_key(ns) {
            ops.push(Op::RemoveResolvConf {
                namespace: ns.clone(),
            });
        }
    }
    // The whole firewall table for what is kept, and the sysctls it needs.
    ops.push(Op::whole_firewall(&kept, &kept));
    ops.extend(restore_sysctls(&mut kept));
    (kept, ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NsRef;
    use crate::model::{test_attachment, test_network, Attachment};

    fn att(ns: &str) -> Attachment {
        test_attachment(ns)
    }

    #[test]
    fn what_differs_is_torn_down_and_what_agrees_is_kept() {
        let mut before = State::default();
        let mut a = test_network("a", "a", &["10.0.0.0/24"]);
        a.attachments.push(att("kept").into());
        a.attachments.push(att("leaving").into());
        before.networks.insert("a".into(), a.clone());
        let mut after = before.clone();
        let net = after.networks.get_mut("a").unwrap();
        net.attachments
            .retain(|x| x.namespace != NsRef::Named("leaving".into()));
        net.attachments.push(att("coming").into());
        after
            .networks
            .insert("b".into(), test_network("b", "b", &["10.1.0.0/24"]));

        let (kept, ops) = recover(&before, &after);
        assert_eq!(kept.networks.len(), 1);
        assert_eq!(
            kept.networks["a"].attachments,
            crate::model::Attachments::from(vec![att("kept").into()])
        );
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        for want in [
            // Namespaces that go take their parked veths along.
            "park ve-leaving until its namespace takes it along",
            "delete namespace leaving",
            "park ve-coming until its namespace takes it along",
            "delete namespace coming",
            "delete link b in host",
            "apply nftables table inet nsnet",
        ] {
            assert!(steps.iter().any(|s| s == want), "{want} not in {steps:?}");
        }
        assert!(
            !steps.iter().any(|s| s.contains("namespace kept")),
            "{steps:?}"
        );
    }

    #[test]
    fn nothing_to_do_when_both_agree() {
        let mut s = State::default();
        s.networks
            .insert("a".into(), test_network("a", "a", &["10.0.0.0/24"]));
        let (kept, ops) = recover(&s, &s);
        assert_eq!(kept, s);
        assert_eq!(ops.len(), 1, "only the firewall table is put back: {ops:?}");
    }
}
