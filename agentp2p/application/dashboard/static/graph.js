// agentp2p dashboard: a small force-directed network graph in SVG.
//
// No library (the page must work with no internet and no build step): nodes
// repel each other, edges pull their ends together, a weak pull keeps the
// picture centred. The layout runs for a bounded number of animation frames
// after each change of the graph, then stops, so an idle dashboard uses no
// CPU. Positions are kept across updates: a node that stays, stays put.
//
//   const g = new NetGraph(svgElement);
//   g.update({nodes: [{id, label, cls, title, fixed}], edges: [{a, b, cls}]});
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

class NetGraph {
  constructor(svg, options) {
    this.svg = svg;
    this.opts = Object.assign({ maxNodes: 400, frames: 240, radius: 9 }, options || {});
    this.nodes = new Map(); // id -> {id, x, y, vx, vy, el, data}
    this.edges = [];
    this.edgeLayer = this._el("g", { class: "edges" });
    this.nodeLayer = this._el("g", { class: "nodes" });
    svg.appendChild(this.edgeLayer);
    svg.appendChild(this.nodeLayer);
    this.framesLeft = 0;
    this.running = false;
    this.signature = "";
  }

  _el(name, attrs) {
    const el = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }

  size() {
    const box = this.svg.viewBox.baseVal;
    return { w: box && box.width ? box.width : 800, h: box && box.height ? box.height : 500 };
  }

  // Replace the graph's contents; only a change of nodes or edges restarts the layout.
  update(graph) {
    const { w, h } = this.size();
    const wanted = graph.nodes.slice(0, this.opts.maxNodes);
    const ids = new Set(wanted.map((n) => n.id));
    for (const [id, node] of this.nodes) {
      if (!ids.has(id)) {
        node.el.remove();
        this.nodes.delete(id);
      }
    }
    const count = wanted.length || 1;
    wanted.forEach((data, i) => {
      let node = this.nodes.get(data.id);
      if (!node) {
        // New nodes start on a circle around the centre, spread by index.
        const angle = (2 * Math.PI * i) / count;
        const r = Math.min(w, h) * 0.35;
        node = { id: data.id, x: w / 2 + r * Math.cos(angle), y: h / 2 + r * Math.sin(angle), vx: 0, vy: 0 };
        node.el = this._el("g", { class: "node" });
        node.circle = this._el("circle", { r: this.opts.radius });
        node.text = this._el("text", { dy: -this.opts.radius - 4, "text-anchor": "middle" });
        node.tip = this._el("title");
        node.el.append(node.circle, node.text, node.tip);
        this.nodeLayer.appendChild(node.el);
        this.nodes.set(data.id, node);
      }
      node.data = data;
      node.el.setAttribute("class", "node " + (data.cls || ""));
      node.el.setAttribute("data-peer", data.id);
      node.text.textContent = data.label || data.id.slice(-6);
      node.tip.textContent = data.title || data.id;
      if (data.fixed) {
        node.x = w / 2;
        node.y = h / 2;
      }
    });
    this.edges = graph.edges.filter((e) => this.nodes.has(e.a) && this.nodes.has(e.b) && e.a !== e.b);
    this.edgeLayer.replaceChildren(
      ...this.edges.map((e) => {
        const line = this._el("line", { class: "edge " + (e.cls || ""), "data-a": e.a, "data-b": e.b });
        e.el = line;
        return line;
      })
    );
    const signature = [...this.nodes.keys()].sort().join(",") + "|" +
      this.edges.map((e) => e.a + "-" + e.b + ":" + (e.cls || "")).sort().join(",");
    if (signature !== this.signature) {
      this.signature = signature;
      this.framesLeft = this.opts.frames;
      if (!this.running) {
        this.running = true;
        requestAnimationFrame(() => this._frame());
      }
    }
    this._draw();
  }

  _frame() {
    this._step();
    this._draw();
    this.framesLeft -= 1;
    if (this.framesLeft > 0) {
      requestAnimationFrame(() => this._frame());
    } else {
      this.running = false;
    }
  }

  _step() {
    const { w, h } = this.size();
    const nodes = [...this.nodes.values()];
    const n = nodes.length;
    const ideal = Math.max(40, Math.min(140, Math.sqrt((w * h) / Math.max(n, 1)) * 0.9));
    const repulse = ideal * ideal;
    for (let i = 0; i < n; i++) {
      const a = nodes[i];
      for (let j = i + 1; j < n; j++) {
        const b = nodes[j];
        let dx = a.x - b.x;
        let dy = a.y - b.y;
        let d2 = dx * dx + dy * dy;
        if (d2 < 0.01) {
          dx = Math.random() - 0.5;
          dy = Math.random() - 0.5;
          d2 = 0.5;
        }
        const f = repulse / d2;
        const d = Math.sqrt(d2);
        const fx = (dx / d) * f * 0.05;
        const fy = (dy / d) * f * 0.05;
        a.vx += fx; a.vy += fy;
        b.vx -= fx; b.vy -= fy;
      }
    }
    for (const e of this.edges) {
      const a = this.nodes.get(e.a);
      const b = this.nodes.get(e.b);
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      const d = Math.sqrt(dx * dx + dy * dy) || 1;
      const f = ((d - ideal) / d) * 0.04;
      a.vx += dx * f; a.vy += dy * f;
      b.vx -= dx * f; b.vy -= dy * f;
    }
    const margin = 24;
    for (const node of nodes) {
      node.vx += (w / 2 - node.x) * 0.004;
      node.vy += (h / 2 - node.y) * 0.004;
      if (node.data.fixed) {
        node.x = w / 2; node.y = h / 2; node.vx = 0; node.vy = 0;
        continue;
      }
      const speed = Math.sqrt(node.vx * node.vx + node.vy * node.vy);
      const limit = 12;
      if (speed > limit) {
        node.vx *= limit / speed; node.vy *= limit / speed;
      }
      node.x = Math.max(margin, Math.min(w - margin, node.x + node.vx));
      node.y = Math.max(margin, Math.min(h - margin, node.y + node.vy));
      node.vx *= 0.6; node.vy *= 0.6;
    }
  }

  _draw() {
    for (const node of this.nodes.values()) {
      node.el.setAttribute("transform", `translate(${node.x.toFixed(1)},${node.y.toFixed(1)})`);
    }
    for (const e of this.edges) {
      const a = this.nodes.get(e.a);
      const b = this.nodes.get(e.b);
      e.el.setAttribute("x1", a.x.toFixed(1)); e.el.setAttribute("y1", a.y.toFixed(1));
      e.el.setAttribute("x2", b.x.toFixed(1)); e.el.setAttribute("y2", b.y.toFixed(1));
    }
  }
}

window.NetGraph = NetGraph;
