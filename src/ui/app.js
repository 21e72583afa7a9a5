// nsnet ui: the topology (d3-force layout), counters, drift and traces.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const NS = "http://www.w3.org/2000/svg";
const svg = document.getElementById("graph");
let signature = "";
let nodes = [];
let edges = [];
let simulation = null;
let selected = [];
let previous = new Map();
let pendingTrace = null;

function api(path) {
  const sep = path.includes("?") ? "&" : "?";
  return fetch(path + sep + "token=" + encodeURIComponent(token)).then((r) => {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  });
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function nsOf(end) {
  return end.slice(0, end.lastIndexOf(":"));
}

function build(t) {
  nodes = [
    ...t.networks.map((n) => ({ id: "net:" + n.name, label: n.name, kind: "network", sub: n.subnets.join(" ") })),
    ...t.namespaces.map((n) => ({
      id: "ns:" + n.name,
      label: n.name,
      kind: n.switch ? "switch" : n.router ? "router" : "host",
    })),
  ];
  edges = [
    ...t.attachments.map((a) => ({
      id: "att:" + a.namespace + "@" + a.network,
      source: "ns:" + a.namespace,
      target: "net:" + a.network,
      label: [a.ifname, ...a.addresses, ...a.ports.map((p) => "publish " + p)].join(" "),
      ifs: [a.namespace + ":" + a.ifname],
    })),
    ...t.links.map((l) => ({
      id: "link:" + l.ends.join("|"),
      source: "ns:" + nsOf(l.ends[0]),
      target: "ns:" + nsOf(l.ends[1]),
      label: l.ends.map((e, i) => [e, ...l.addresses[i]].join(" ")).join(" — "),
      ifs: l.ends,
    })),
  ];
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const w = svg.clientWidth || 900;
  const h = svg.clientHeight || 600;
  const edgeLayer = el("g", {}, svg);
  const nodeLayer = el("g", {}, svg);
  for (const e of edges) {
    e.g = el("g", { class: "edge", "data-id": e.id }, edgeLayer);
    e.line = el("line", {}, e.g);
    e.text = el("text", {}, e.g);
    e.text.textContent = e.label;
    e.counter = el("text", { class: "counter", "data-if": e.ifs[0], dy: "12" }, e.g);
  }
  for (const n of nodes) {
    n.g = el("g", { class: "node " + n.kind, "data-name": n.label, "data-id": n.id }, nodeLayer);
    if (n.kind === "host") el("circle", { r: 18 }, n.g);
    else el("rect", { x: -34, y: -14, width: 68, height: 28, rx: n.kind === "network" ? 10 : 2 }, n.g);
    const label = el("text", {}, n.g);
    label.textContent = n.label;
    n.g.addEventListener("click", () => select(n));
  }
  if (simulation) simulation.stop();
  simulation = d3
    .forceSimulation(nodes)
    .force("link", d3.forceLink(edges).id((d) => d.id).distance(110))
    .force("charge", d3.forceManyBody().strength(-400))
    .force("center", d3.forceCenter(w / 2, h / 2))
    .on("tick", () => {
      for (const e of edges) {
        e.line.setAttribute("x1", e.source.x);
        e.line.setAttribute("y1", e.source.y);
        e.line.setAttribute("x2", e.target.x);
        e.line.setAttribute("y2", e.target.y);
        const x = (e.source.x + e.target.x) / 2;
        const y = (e.source.y + e.target.y) / 2;
        e.text.setAttribute("x", x);
        e.text.setAttribute("y", y);
        e.counter.setAttribute("x", x);
        e.counter.setAttribute("y", y);
      }
      for (const n of nodes) n.g.setAttribute("transform", "translate(" + n.x + "," + n.y + ")");
    });
}

function mark(t) {
  const drifted = new Set();
  for (const a of t.attachments) if (a.drifted) drifted.add("att:" + a.namespace + "@" + a.network);
  for (const l of t.links) if (l.drifted) drifted.add("link:" + l.ends.join("|"));
  for (const n of t.networks) if (n.drifted) drifted.add("net:" + n.name);
  const impaired = new Set(t.links.filter((l) => l.impaired.some((i) => i)).map((l) => "link:" + l.ends.join("|")));
  for (const e of edges) {
    e.g.classList.toggle("drifted", drifted.has(e.id));
    e.g.classList.toggle("impaired", impaired.has(e.id));
  }
  for (const n of nodes) n.g.classList.toggle("drifted", drifted.has(n.id));
  const list = document.getElementById("drift");
  list.textContent = "";
  for (const d of t.drift) {
    const li = document.createElement("li");
    li.textContent = d;
    list.appendChild(li);
  }
  if (!t.drift.length) {
    const li = document.createElement("li");
    li.className = "clean";
    li.textContent = "none: the kernel matches the record";
    list.appendChild(li);
  }
}

function rate(bytes) {
  if (bytes < 1024) return bytes.toFixed(0) + " B/s";
  if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " kB/s";
  return (bytes / 1048576).toFixed(1) + " MB/s";
}

function counters(list) {
  const now = performance.now();
  for (const c of list) {
    const key = c.namespace + ":" + c.ifname;
    const before = previous.get(key);
    previous.set(key, { at: now, rx: c.rx_bytes, tx: c.tx_bytes });
    for (const t of document.querySelectorAll('text.counter[data-if="' + CSS.escape(key) + '"]')) {
      t.setAttribute("data-tx-bytes", c.tx_bytes);
      t.setAttribute("data-rx-bytes", c.rx_bytes);
      if (before && now > before.at) {
        const s = (now - before.at) / 1000;
        t.textContent = "tx " + rate((c.tx_bytes - before.tx) / s) + " rx " + rate((c.rx_bytes - before.rx) / s);
      } else {
        t.textContent = "tx " + c.tx_bytes + " B rx " + c.rx_bytes + " B";
      }
    }
  }
}

function select(n) {
  if (n.kind === "network") return;
  selected = selected.length >= 2 ? [] : selected;
  selected.push(n);
  for (const m of nodes) m.g.classList.toggle("selected", selected.includes(m));
  if (selected.length === 2) trace(selected[0].label, selected[1].label);
}

function trace(src, dst) {
  const out = document.getElementById("trace");
  out.textContent = "tracing " + src + " → " + dst + "…";
  api("/api/trace?proto=icmp&src=" + encodeURIComponent(src) + "&dst=" + encodeURIComponent(dst))
    .then((t) => {
      out.textContent = "";
      const p = document.createElement("p");
      p.className = "verdict " + (t.reached ? "reached" : "dropped");
      p.textContent = src + " → " + dst + " (" + t.address + "): " + (t.reached ? "reached" : t.cause || "not reached");
      out.appendChild(p);
      const ol = document.createElement("ol");
      ol.id = "hops";
      for (const h of t.hops) {
        const li = document.createElement("li");
        li.textContent = hopText(h);
        ol.appendChild(li);
      }
      out.appendChild(ol);
    })
    .catch((e) => {
      out.textContent = "trace failed: " + e.message;
    });
}

function hopText(h) {
  switch (h.step) {
    case "route":
      return h.namespace + ": route to " + h.to + (h.via ? " via " + h.via : "") + " dev " + h.dev;
    case "cross":
      return h.what;
    case "chains":
      return "host " + h.hook + ": " + h.chains.map((c) => c.table + " " + c.chain + " " + c.verdict).join("; ");
    case "dnat":
      return "DNAT " + h.published + " → " + h.to;
    case "arrive":
      return h.namespace + ": its own address";
    case "listen":
      return h.namespace + ": " + (h.listening ? "something listens" : "nothing listens") + " on " + h.port;
    case "leave":
      return "leaves the host through " + h.dev;
    default:
      return JSON.stringify(h);
  }
}

function topology() {
  return api("/api/topology").then((t) => {
    const sig = JSON.stringify([
      t.networks.map((n) => n.name),
      t.namespaces.map((n) => [n.name, n.router, n.switch]),
      t.attachments.map((a) => [a.namespace, a.network, a.addresses, a.ports]),
      t.links.map((l) => [l.ends, l.addresses]),
    ]);
    if (sig !== signature) {
      signature = sig;
      build(t);
    }
    mark(t);
    if (pendingTrace) {
      const [a, b] = pendingTrace;
      pendingTrace = null;
      // Real clicks on the two nodes: the same path as a user's.
      for (const name of [a, b]) {
        const n = nodes.find((m) => m.label === name && m.kind !== "network");
        if (n) n.g.dispatchEvent(new MouseEvent("click", { bubbles: true }));
      }
    }
  });
}

// Counters every second; the topology and its drift (`check`, the
// costly part with many namespaces) every other second: drift shows
// within two seconds.
let tick = 0;
function refresh() {
  const work = tick++ % 2 === 0 ? topology() : Promise.resolve();
  work
    .then(() => api("/api/counters"))
    .then((list) => {
      counters(list);
      document.getElementById("status").textContent = "live";
    })
    .catch((e) => {
      document.getElementById("status").textContent = "disconnected (" + e.message + ")";
    });
}

// `#trace=A,B` clicks A then B once the topology is drawn.
const m = /^#trace=([^,]+),(.+)$/.exec(location.hash);
if (m) pendingTrace = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
refresh();
setInterval(refresh, 1000);
