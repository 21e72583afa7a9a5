//! The difference between two states, small when the change is: a
//! command's journal records it instead of both whole states, so that
//! writing the intent costs what the change costs, not what the state
//! holds. `apply(before, &diff(before, after)) == after`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Attachment, Network, NsRef, ResolvConf, State};

/// Attachments of a network whose own settings stayed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentDelta {
    pub removed: Vec<NsRef>,
    /// New ones (appended, in order) and changed ones (replaced in place).
    pub upserted: Vec<Arc<Attachment>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDelta {
    /// Networks that came, went or whose settings changed: their value
    /// after (`None`: removed), attachments included.
    pub networks: BTreeMap<String, Option<Network>>,
    pub attachments: BTreeMap<String, AttachmentDelta>,
    /// The whole map after, when it changed (it is small).
    pub sysctls: Option<BTreeMap<String, String>>,
    pub resolv_confs: BTreeMap<String, Option<Arc<ResolvConf>>>,
    /// Lab objects after, when they changed (a lab holds few).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<Lab>,
    /// Docker's IPAM pools after, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_pools: Option<BTreeMap<String, super::docker::Pool>>,
}

/// A state's lab objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lab {
    pub links: Vec<super::lab::Link>,
    pub namespaces: BTreeMap<String, super::lab::LabNamespace>,
    pub impairments: super::lab::Impairments,
}

fn lab_of(s: &State) -> Lab {
    Lab {
        links: s.links.clone(),
        namespaces: s.lab_namespaces.clone(),
        impairments: s.impairments.clone(),
    }
}

fn attachment_delta(before: &Network, after: &Network) -> AttachmentDelta {
    // Only what the lists do not share at their start and end is indexed.
    let (b, a) = super::Attachments::differing(&before.attachments, &after.attachments);
    let index = |atts: &[&Arc<Attachment>]| -> std::collections::HashMap<NsRef, usize> {
        atts.iter()
            .enumerate()
            .map(|(i, a)| (a.namespace.clone(), i))
            .collect()
    };
    let (bi, ai) = (index(&b), index(&a));
    let mut d = AttachmentDelta::default();
    for att in &b {
        if !ai.contains_key(&att.namespace) {
            d.removed.push(att.namespace.clone());
        }
    }
    for att in a {
        if bi.get(&att.namespace).map(|i| b[*i]) != Some(att) {
            d.upserted.push(att.clone());
        }
    }
    d
}

pub fn diff(before: &State, after: &State) -> StateDelta {
    let mut d = StateDelta::default();
    for (name, b) in &before.networks {
        match after.networks.get(name) {
            None => {
                d.networks.insert(name.clone(), None);
            }
            Some(a) if !b.same_settings(a) => {
                d.networks.insert(name.clone(), Some(a.clone()));
            }
            Some(a) if a.attachments != b.attachments => {
                d.attachments.insert(name.clone(), attachment_delta(b, a));
            }
            Some(_) => {}
        }
    }
    for (name, a) in &after.networks {
        if !before.networks.contains_key(name) {
            d.networks.insert(name.clone(), Some(a.clone()));
        }
    }
    if before.sysctls != after.sysctls {
        d.sysctls = Some(after.sysctls.clone());
    }
    d.resolv_confs = super::resolv_confs::ResolvConfs::changed_between(
        &before.resolv_confs,
        &after.resolv_confs,
    );
    if before.links != after.links
        || before.lab_namespaces != after.lab_namespaces
        || before.impairments != after.impairments
    {
        d.lab = Some(lab_of(after));
    }
    if before.docker_pools != after.docker_pools {
        d.docker_pools = Some(after.docker_pools.clone());
    }
    d
}

/// `before` with the change applied. Idempotent: applying it to the state
/// after gives that state again.
pub fn apply(before: &State, d: &StateDelta) -> State {
    let mut s = before.clone();
    apply_in_place(&mut s, d);
    s
}

/// `apply`, changing `s` itself.
pub fn apply_in_place(s: &mut State, d: &StateDelta) {
    apply_all_in_place(s, std::slice::from_ref(d));
}

/// `apply_in_place` of each change in turn, each network's attachments
/// changed in one walk for all of them (a log holds up to sixteen: one
/// walk over a thousand attachments instead of one per change).
pub fn apply_all_in_place(s: &mut State, deltas: &[StateDelta]) {
    use super::attachments::Change;
    // Attachment changes not applied yet, per network, in order.
    let mut pending: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    for d in deltas {
        for (name, net) in &d.networks {
            // Replaced or removed whole: what was pending for it is moot.
            pending.remove(name.as_str());
            match net {
                Some(n) => s.networks.insert(name.clone(), n.clone()),
                None => s.networks.remove(name),
            };
        }
        for (name, ad) in &d.attachments {
            if !s.networks.contains_key(name) {
                continue;
            }
            let changes = pending.entry(name.as_str()).or_default();
            changes.extend(ad.removed.iter().map(Change::Remove));
            changes.extend(ad.upserted.iter().map(Change::Upsert));
        }
        if let Some(sysctls) = &d.sysctls {
            s.sysctls = sysctls.clone();
        }
        for (key, conf) in &d.resolv_confs {
            match conf {
                Some(c) => s.resolv_confs.insert(key.clone(), c.clone()),
                None => drop(s.resolv_confs.remove(key)),
            }
        }
        if let Some(lab) = &d.lab {
            s.links = lab.links.clone();
            s.lab_namespaces = lab.namespaces.clone();
            s.impairments = lab.impairments.clone();
        }
        if let Some(pools) = &d.docker_pools {
            s.docker_pools = pools.clone();
        }
    }
    for (name, changes) in pending {
        if let Some(net) = s.networks.get_mut(name) {
            net.attachments.apply_changes(&changes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_attachment, test_network, Attachments};

    fn state(nets: &[(&str, &[&str])]) -> State {
        let mut s = State::default();
        for (i, (name, nss)) in nets.iter().enumerate() {
            let mut n = test_network(name, name, &[&format!("10.{i}.0.0/24")]);
            n.attachments = nss.iter().map(|ns| test_attachment(ns).into()).collect();
            s.networks.insert(name.to_string(), n);
        }
        s
    }

    #[test]
    fn applying_the_difference_gives_the_state_after() {
        let before = state(&[("a", &["x", "y", "z"]), ("b", &["w"]), ("gone", &[])]);
        let mut after = state(&[
            ("a", &["x", "z", "new1", "new2"]),
            ("b", &["w"]),
            ("came", &["q"]),
        ]);
        // A change in place: the heir of a namespace nsnet created.
        Arc::make_mut(&mut after.networks.get_mut("b").unwrap().attachments[0]).namespace_created =
            false;
        after
            .sysctls
            .insert("net/ipv4/ip_forward".into(), "0".into());
        after.resolv_confs.insert(
            "x".into(),
            Arc::new(ResolvConf {
                servers: vec!["192.0.2.53".parse().unwrap()],
                owner: "/f.toml".into(),
                search: vec![],
            }),
        );
        let d = diff(&before, &after);
        assert_eq!(apply(&before, &d), after);
        assert_eq!(apply(&after, &d), after, "idempotent");
        // Only what changed is in it.
        assert_eq!(d.attachments["a"].removed, vec![NsRef::Named("y".into())]);
        assert_eq!(d.attachments["a"].upserted.len(), 2);
        assert_eq!(d.attachments["b"].upserted.len(), 1);
        assert!(d.networks.contains_key("gone") && d.networks.contains_key("came"));
        assert!(!d.networks.contains_key("a"));
        assert_eq!(diff(&after, &after), StateDelta::default());
    }

    #[test]
    fn changes_applied_together_are_changes_applied_in_turn() {
        let s0 = state(&[("a", &["x", "y", "z"]), ("b", &["w"])]);
        // A log's worth: attachments come and go, network a is replaced
        // whole half-way (what came before for it is moot), b goes and a
        // change to it afterwards finds no network, b comes back.
        let mut steps = vec![s0.clone()];
        let mut next = |f: &dyn Fn(&mut State)| {
            let mut s = steps.last().unwrap().clone();
            f(&mut s);
            steps.push(s);
        };
        fn atts<'s>(s: &'s mut State, net: &str) -> &'s mut Attachments {
            &mut s.networks.get_mut(net).unwrap().attachments
        }
        next(&|s| atts(s, "a").push(test_attachment("n1").into()));
        next(&|s| atts(s, "a").remove_namespace(&NsRef::Named("y".into())));
        next(&|s| {
            atts(s, "a").push(test_attachment("n2").into());
            atts(s, "a").push(test_attachment("y").into());
            Arc::make_mut(&mut atts(s, "a")[0]).namespace_created = false;
        });
        next(&|s| s.networks.get_mut("a").unwrap().masquerade = false);
        next(&|s| atts(s, "a").push(test_attachment("n3").into()));
        next(&|s| drop(s.networks.remove("b")));
        next(&|s| {
            let mut b = test_network("b", "b", &["10.9.0.0/24"]);
            b.attachments = [test_attachment("v").into()].into_iter().collect();
            s.networks.insert("b".into(), b);
        });
        next(&|s| atts(s, "b").push(test_attachment("u").into()));
        let deltas: Vec<StateDelta> = steps.windows(2).map(|w| diff(&w[0], &w[1])).collect();
        assert!(deltas.iter().all(|d| d != &StateDelta::default()));
        let mut together = s0.clone();
        apply_all_in_place(&mut together, &deltas);
        assert_eq!(&together, steps.last().unwrap());
        let mut in_turn = s0;
        deltas.iter().for_each(|d| apply_in_place(&mut in_turn, d));
        assert_eq!(together, in_turn);
    }

    #[test]
    fn one_more_attachment_is_a_small_difference() {
        let many: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let before = state(&[("big", &refs)]);
        let mut after = before.clone();
        after
            .networks
            .get_mut("big")
            .unwrap()
            .attachments
            .push(test_attachment("one-more").into());
        let d = diff(&before, &after);
        let size = serde_json::to_vec(&d).unwrap().len();
        assert!(size < 1000, "the journal of one connect is {size} bytes");
        assert_eq!(apply(&before, &d), after);
    }
}
