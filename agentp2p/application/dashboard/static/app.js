// agentp2p dashboard: reads the daemon's control API and keeps the page current.
//
// Every request goes to this page's own origin with the session cookie the
// login link set (HttpOnly: this script never sees it, nor the API token).
// What comes from the network (agent names, capabilities, topics) is put on
// the page as text, never as HTML.
//
// Refresh: counters, peers, topics and the graph every FAST_MS; node info,
// records and a full membership re-sync every SLOW_MS; membership changes
// as they happen, from the /v1/members/events stream. Nothing overlaps: each
// loop schedules its next round when the current one is done.
"use strict";

(() => {
  const FAST_MS = 2000;
  const SLOW_MS = 10000;
  const MAX_TOPICS = 20; // topics whose mesh is fetched each round
  const HISTORY = 60; // points per sparkline
  const ALL_STATES = "state=alive&state=suspect&state=dead&state=left";
  const EVENT_STATE = { joined: "alive", recovered: "alive", suspect: "suspect", failed: "dead", left: "left" };
  const RATES = {
    published: (s) => s.pubsub && s.pubsub.published,
    delivered: (s) => s.pubsub && s.pubsub.delivered,
    forwarded: (s) => s.pubsub && s.pubsub.router && s.pubsub.router.forwarded,
    sent: (s) => s.messaging && s.messaging.sent,
    received: (s) => s.messaging && s.messaging.delivered,
    bytes_in: (s) => s.pubsub && s.pubsub.bytes_in,
    bytes_out: (s) => s.pubsub && s.pubsub.bytes_out,
  };

  const $ = (id) => document.getElementById(id);

  class AuthLost extends Error {}

  const state = {
    mode: null, // "node" or "devnet", from the first graph answer
    self: null,
    names: new Map(), // peer ID -> agent name, from records
    members: new Map(), // peer ID -> {state, incarnation, since: ms timestamp}
    swim: true,
    prev: null, // {t, values} of the previous stats sample
    history: {}, // rate name -> [values]
    events: null,
    authLost: false,
    failures: 0,
    slowStarted: false,
  };

  // Says "the page's own script" to the daemon: a browser that sends neither
  // Sec-Fetch-Site nor Origin gets the session's reads only with it (another
  // origin cannot add it without a CORS preflight, which the daemon refuses).
  const PAGE_HEADER = { "X-Agentp2p-Dashboard": "1" };

  async function getJSON(path) {
    const r = await fetch(path, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", ...PAGE_HEADER },
    });
    if (r.status === 401) throw new AuthLost(path);
    if (!r.ok) {
      const err = new Error(`${path}: HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  // -- formatting -------------------------------------------------------------

  function short(id) {
    return id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
  }

  function rate(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function bytes(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function duration(seconds) {
    if (seconds < 60) return seconds.toFixed(0) + " s";
    if (seconds < 3600) return (seconds / 60).toFixed(0) + " min";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function peerCell(id) {
    const td = el("td");
    const name = state.names.get(id);
    if (name) td.append(el("span", name, { class: "name" }), " ");
    td.append(el("code", short(id), { class: "peer", title: id }));
    return td;
  }

  function idCell(id) {
    const td = el("td");
    td.append(el("code", short(id), { class: "peer", title: id }));
    return td;
  }

  function fillTable(table, rows, emptyId) {
    const body = $(table).tBodies[0];
    body.replaceChildren(...rows);
    if (emptyId) $(emptyId).hidden = rows.length > 0;
  }

  function row(peer, cells, cls) {
    const tr = el("tr", null, peer ? { "data-peer": peer } : {});
    if (cls) tr.className = cls;
    tr.append(...cells);
    return tr;
  }

  // -- status -----------------------------------------------------------------

  function setLive(kind, text) {
    const badge = $("live");
    badge.dataset.state = kind;
    badge.textContent = text;
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text;
    b.hidden = !text;
  }

  function lostSession() {
    if (state.authLost) return;
    state.authLost = true;
    setLive("down", "logged out");
    banner("This browser's dashboard session ended (it expired, you logged out, or the daemon restarted). "
      + "Run 'agentp2p dashboard' on the daemon's machine and open the new link.");
    if (state.events) state.events.close();
  }

  function failed(err) {
    if (err instanceof AuthLost) {
      lostSession();
      return;
    }
    state.failures += 1;
    setLive("down", "no answer");
    banner("The daemon does not answer (" + err.message + "); retrying.");
  }

  function succeeded() {
    state.failures = 0;
    if (!state.authLost) {
      setLive("up", "live");
      banner("");
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // -- counters and rates ----------------------------------------------------

  function spark(name) {
    const svg = $("s-" + name);
    if (!svg) return;
    const values = state.history[name] || [];
    const max = Math.max(1e-9, ...values);
    const points = values.map((v, i) => `${(i * 120) / (HISTORY - 1)},${(26 - (v / max) * 24).toFixed(1)}`).join(" ");
    let line = svg.querySelector("polyline");
    if (!line) {
      line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      svg.appendChild(line);
    }
    line.setAttribute("points", points);
  }

  function renderStats(stats, subtitle) {
    $("m-connections").textContent = stats.connections;
    $("m-routing").textContent = subtitle || "routing table " + stats.routing_table_size;
    const now = performance.now() / 1000;
    const values = {};
    for (const [name, read] of Object.entries(RATES)) values[name] = read(stats);
    const rates = {};
    if (state.prev) {
      const dt = now - state.prev.t;
      for (const name of Object.keys(RATES)) {
        const a = state.prev.values[name];
        const b = values[name];
        rates[name] = typeof a === "number" && typeof b === "number" && dt > 0 ? Math.max(0, (b - a) / dt) : null;
      }
      for (const [name, v] of Object.entries(rates)) {
        const h = (state.history[name] = state.history[name] || []);
        h.push(v || 0);
        if (h.length > HISTORY) h.shift();
        spark(name);
      }
    }
    state.prev = { t: now, values };
    for (const name of ["published", "delivered", "forwarded", "sent", "received"]) {
      $("m-" + name).textContent = state.prev && name in rates ? rate(rates[name]) : "–";
    }
    $("m-bytes").textContent = "bytes_in" in rates ? bytes(rates.bytes_in) + "/s · " + bytes(rates.bytes_out) + "/s" : "–";
    const p = stats.pubsub || {};
    const dropped = (p.dropped_inbound || 0) + (p.dropped_outbound || 0) + (p.dropped_disconnected || 0);
    $("m-dropped").textContent = "dropped " + dropped + " · rejected " + (p.rejected || 0);
  }

  // -- peers, members, topics, records --------------------------------------

  function renderPeers(answer) {
    const rows = answer.peers.map((p) => {
      const c = p.connections[0] || {};
      return row(p.peer_id, [
        peerCell(p.peer_id),
        el("td", c.direction || "–"),
        el("td", (c.remote_addrs || [])[0] || "–", { class: "addr" }),
        el("td", c.streams === undefined ? "–" : c.streams),
        el("td", p.trust ? p.trust.level + (p.trust.score ? " (" + p.trust.score + ")" : "") : "–"),
      ]);
    });
    $("peers-count").textContent = answer.peers.length;
    fillTable("peers", rows, "peers-empty");
  }

  function renderMembers() {
    if (!state.swim) {
      fillTable("members", [], null);
      $("members-empty").hidden = false;
      $("members-empty").textContent = "SWIM membership is off on this daemon.";
      $("members-count").textContent = "";
      return;
    }
    const now = Date.now();
    const order = { alive: 0, suspect: 1, dead: 2, left: 3 };
    const entries = [...state.members.entries()].sort(
      (a, b) => (order[a[1].state] ?? 9) - (order[b[1].state] ?? 9) || a[0].localeCompare(b[0])
    );
    const rows = entries.map(([peer, m]) =>
      row(peer, [
        peerCell(peer),
        el("td", m.state, { class: "state " + m.state }),
        el("td", m.incarnation),
        el("td", duration(Math.max(0, (now - m.since) / 1000))),
      ], "member " + m.state)
    );
    const live = entries.filter(([, m]) => m.state === "alive" || m.state === "suspect").length;
    $("members-count").textContent = live + " live" + (entries.length > live ? ", " + (entries.length - live) + " gone" : "");
    fillTable("members", rows, "members-empty");
  }

  function setMembers(list) {
    const now = Date.now();
    state.members = new Map(list.map((m) => [m.peer_id, { state: m.state, incarnation: m.incarnation, since: now - m.since_s * 1000 }]));
    if (state.self) state.members.delete(state.self);
    renderMembers();
  }

  function renderTopics(views) {
    const rows = views.map((v) => {
      const mesh = el("td");
      for (const peer of v.mesh) {
        const score = v.scoring && v.scores[peer] !== undefined ? " (" + v.scores[peer].toFixed(1) + ")" : "";
        mesh.append(el("code", (state.names.get(peer) || short(peer)) + score, { class: "peer", title: peer }), " ");
      }
      if (!v.mesh.length) mesh.textContent = "–";
      return row(null, [el("td", v.topic, { class: "topic" }), el("td", v.peers.length), mesh]);
    });
    $("topics-count").textContent = views.length;
    fillTable("topics", rows, "topics-empty");
  }

  function renderRecords(answer) {
    const records = [];
    if (answer.self) records.push(answer.self);
    for (const r of answer.known) if (!answer.self || r.peer_id !== answer.self.peer_id) records.push(r);
    state.names = new Map(records.map((r) => [r.peer_id, r.name]));
    if (answer.self) {
      $("self-name").textContent = answer.self.name;
    }
    const rows = records.map((r) => {
      const caps = el("td");
      for (const c of r.capabilities) {
        const tags = c.tags && c.tags.length ? " [" + c.tags.join(", ") + "]" : "";
        caps.append(el("span", c.name + tags, { class: "cap", title: c.description || c.name }), " ");
      }
      if (!r.capabilities.length) caps.textContent = "–";
      const name = el("td", r.name, { class: "name", title: r.description || "" });
      return row(r.peer_id, [name, idCell(r.peer_id), caps]);
    });
    $("records-count").textContent = records.length + (answer.truncated ? "+" : "");
    const empty = $("records-empty");
    empty.textContent = answer.records ? "No records known yet." : "This daemon runs no records service.";
    fillTable("records", rows, "records-empty");
  }

  // -- the graph --------------------------------------------------------------

  const graph = new window.NetGraph($("graph"));
  const NODE_CLASS = {
    self: "self", connected: "connected", alive: "alive", suspect: "suspect", dead: "dead", left: "dead",
    up: "connected", starting: "alive", paused: "suspect", silent: "suspect", killed: "dead", failed: "dead",
  };

  function renderGraph(view) {
    const meshPeers = new Set(view.edges.filter((e) => e.kind === "mesh").flatMap((e) => [e.a, e.b]));
    const nodes = view.nodes.map((n) => ({
      id: n.id,
      label: n.label,
      fixed: n.state === "self",
      cls: (NODE_CLASS[n.state] || "alive") + (meshPeers.has(n.id) && n.state !== "self" ? " mesh" : ""),
      title: n.id + "\n" + n.state + (n.swim ? " (SWIM: " + n.swim + ")" : "") + (n.topics ? "\nmesh: " + n.topics.join(", ") : ""),
    }));
    graph.update({ nodes, edges: view.edges.map((e) => ({ a: e.a, b: e.b, cls: e.kind })) });
    const connected = view.nodes.filter((n) => n.state === "connected" || n.state === "up").length;
    $("graph-count").textContent = view.nodes.length + " nodes, " + view.edges.length + " links";
    let note = view.mode === "devnet"
      ? "The whole devnet, as its nodes report it: an edge is a connection, a thick one a mesh link on the devnet topic."
      : "As this node sees it: its " + connected + (connected === 1 ? " connection" : " connections")
        + (view.swim ? ", and the other nodes SWIM knows." : " (SWIM is off on this daemon).");
    if (view.truncated) note += " Only the first " + view.nodes.length + " nodes are drawn.";
    $("graph-note").textContent = note;
  }

  function setMode(mode) {
    if (state.mode === mode) return;
    state.mode = mode;
    for (const s of document.querySelectorAll(".node-only")) s.hidden = mode !== "node";
    for (const s of document.querySelectorAll(".devnet-only")) s.hidden = mode !== "devnet";
  }

  function renderNodes(view) {
    const rows = view.nodes.map((n) =>
      row(n.id, [
        el("td", n.label),
        idCell(n.id),
        el("td", n.state, { class: "state " + (NODE_CLASS[n.state] || "") }),
        el("td", n.connections ?? "–"),
        el("td", n.mesh ?? "–"),
        el("td", n.swim_alive ?? "–"),
      ])
    );
    $("nodes-count").textContent = view.nodes.length;
    fillTable("nodes", rows, null);
  }

  // -- loops ------------------------------------------------------------------

  async function topicViews() {
    const answer = await getJSON("/v1/pubsub/topics");
    const topics = answer.topics.map((t) => t.topic).slice(0, MAX_TOPICS);
    return Promise.all(topics.map((t) => getJSON("/v1/pubsub/peers?topic=" + encodeURIComponent(t))));
  }

  async function fast() {
    if (state.authLost) return;
    try {
      const view = await getJSON("/dashboard/api/network");
      setMode(view.mode);
      if (!state.slowStarted) {
        state.slowStarted = true; // once the mode is known: a devnet has no /v1 to ask
        slow();
      }
      if (view.mode === "devnet") {
        renderNodes(view);
        renderStats(view.stats, view.up + " of " + view.total + " nodes up");
      } else {
        const [stats, peers, topics] = await Promise.all([getJSON("/v1/node/stats"), getJSON("/v1/peers"), topicViews()]);
        renderStats(stats);
        renderPeers(peers);
        renderTopics(topics);
      }
      renderGraph(view);
      succeeded();
    } catch (err) {
      failed(err);
    }
    if (!state.authLost) setTimeout(fast, FAST_MS);
  }

  async function slow() {
    if (state.authLost) return;
    try {
      if (state.mode !== "devnet") {
        const info = await getJSON("/v1/node");
        state.self = info.peer_id;
        $("self-id").textContent = short(info.peer_id);
        $("self-id").title = info.peer_id;
        $("agent").textContent = info.agent_version;
        $("uptime").textContent = "up " + duration(info.uptime_s);
        renderRecords(await getJSON("/dashboard/api/records"));
        try {
          setMembers((await getJSON("/v1/members?" + ALL_STATES)).members);
          state.swim = true;
          if (!state.events) watchMembers();
        } catch (err) {
          if (err.status !== 503) throw err;
          state.swim = false; // SWIM off on this daemon
          renderMembers();
        }
      } else {
        $("self-id").textContent = "devnet";
        $("self-id").title = "agentp2p devnet: every node of the local test network";
      }
    } catch (err) {
      failed(err);
    }
    if (!state.authLost) setTimeout(slow, SLOW_MS);
  }

  function watchMembers() {
    const events = new EventSource("/v1/members/events");
    state.events = events;
    events.addEventListener("members", (ev) => setMembers(JSON.parse(ev.data).members));
    for (const kind of Object.keys(EVENT_STATE)) {
      events.addEventListener(kind, (ev) => {
        const data = JSON.parse(ev.data);
        if (data.peer_id === state.self) return;
        state.members.set(data.peer_id, { state: EVENT_STATE[kind], incarnation: data.incarnation, since: Date.now() });
        renderMembers();
      });
    }
    events.onerror = () => {
      // A stream refused outright (401, 503) is closed for good; the slow
      // loop re-syncs and opens a new one.
      if (events.readyState === EventSource.CLOSED) state.events = null;
    };
  }

  $("logout").addEventListener("click", async () => {
    try {
      await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin", headers: PAGE_HEADER });
    } finally {
      lostSession();
      banner("Logged out. Run 'agentp2p dashboard' for a new login link.");
    }
  });

  fast();
})();
