// The circuit graph's page script (see pyvis_html.render): CE_DATA (nodes, edges), CE_CONFIG and CE_STATE
// are defined before it. Every edge is in CE_DATA once; a view state says which are shown, and only what
// changes between two views is added to or removed from the drawn DataSets.
(function () {
  const GRAPH_ID = CE_CONFIG.graph;
  const ALL = CE_DATA.edges;
  const EDGE = new Map(ALL.map(e => [e.id, e]));
  const NODE = new Map(CE_DATA.nodes.map(n => [n.id, n]));
  const ALWAYS = ["input", "tok", "pos", "logits"].filter(id => NODE.has(id));
  let lo = Infinity, hi = -Infinity;
  for (const e of ALL) { lo = Math.min(lo, e.score); hi = Math.max(hi, e.score); }
  const shownEdges = new vis.DataSet(), shownNodes = new vis.DataSet();
  const container = document.getElementById("mynetwork");
  let font = getComputedStyle(document.body).fontFamily;
  const network = new vis.Network(container, {nodes: shownNodes, edges: shownEdges}, {
    physics: {enabled: false}, layout: {improvedLayout: false},
    interaction: {hover: true, tooltipDelay: 80, dragNodes: false, multiselect: false},
    edges: {selectionWidth: 1.5}, nodes: {shape: "box", margin: 6},
  });
  let state = Object.assign({}, CE_STATE), visible = new Set(), visibleNodes = new Set(), layoutKey = "";
  let userMoved = false, fontSize = CE_CONFIG.labelPx, gaps = [100, 100], styleKey = "";

  function rgba(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a.toFixed(3)})`;
  }

  function edgeStyle(e, h, effects, effMax) {
    const span = hi - lo, frac = span <= 0 ? 1 : Math.min(1, Math.max(0, (e.score - lo) / span));
    const [w0, w1] = CE_CONFIG.width, [a0, a1] = CE_CONFIG.opacity;
    let color = e.color, alpha = a0 + frac * (a1 - a0), width = w0 + frac * (w1 - w0);
    let title = e.id.replace("->", " \u2192 ") + (e.members ? "\nin: " + e.members.join(", ")
      : "\nscore " + e.score.toPrecision(4) + (e.kept ? "" : "\n(not in the saved cut)"));
    if (e.members) { alpha = 0.95; width = 2 + 2 * frac; }
    if (effects) {
      const v = effects[e.id] || 0, f = effMax > 0 ? Math.abs(v) / effMax : 0;
      color = v >= 0 ? "#0072b2" : "#d55e00"; alpha = 0.25 + 0.7 * f; width = 0.6 + 7 * f;
      title += "\neffect on this prompt " + (v >= 0 ? "+" : "") + v.toPrecision(3);
    }
    const dimmed = h !== null && e.from !== h && e.to !== h;
    const c = dimmed ? CE_CONFIG.dim : rgba(color, alpha);
    const roundness = {q: 0.06, k: 0.14, v: 0.22}[e.qkv] || 0.0;
    return {id: e.id, from: e.from, to: e.to, width: Math.round(width * 100) / 100, title: title,
            color: {color: c, highlight: rgba(color, 1), hover: rgba(color, 1)},
            smooth: {type: "curvedCW", roundness: roundness}, arrows: {to: {enabled: true, scaleFactor: 0.45}}};
  }

  function nodeStyle(n, h, near, weight, pinned) {
    const sel = n.id === h, faded = h !== null && !near.has(n.id);
    return {id: n.id, label: (pinned ? "\u25C6 " : "") + n.label, title: n.title, x: n.x, y: n.y,
            opacity: faded ? 0.35 : 1, borderWidth: sel ? 5 : 1 + 4 * weight, borderWidthSelected: 5,
            color: {background: n.fill, border: sel ? "#000000" : n.color,
                    highlight: {background: n.fill, border: "#000000"}, hover: {background: n.fill, border: n.color}},
            font: {size: fontSize, face: font, color: "#1f1f1f"},
            shapeProperties: {borderDashes: pinned ? [5, 3] : false}};
  }

  // Shown nodes spread to fill the canvas: a row per layer, heads in their untangled order, MLPs in their
  // own column on the right, input and logits centred.
  function relayout(ids) {
    const rows = new Map();
    let maxK = 1, rmin = Infinity, rmax = -Infinity;
    for (const id of ids) {
      const n = NODE.get(id);
      rmin = Math.min(rmin, n.row); rmax = Math.max(rmax, n.row);
      if (n.kind !== "attn" && n.kind !== "kv") continue;
      if (!rows.has(n.row)) rows.set(n.row, []);
      rows.get(n.row).push(n);
    }
    for (const r of rows.values()) maxK = Math.max(maxK, r.length);
    const W = container.clientWidth || 900, H = container.clientHeight || 600;
    const xg = Math.min(190, Math.max(84, (W - 150) / (maxK + 1.6)));
    const yg = Math.min(190, Math.max(58, (H - 60) / Math.max(1, rmax - rmin)));
    gaps = [xg, yg];
    for (const r of rows.values()) {
      r.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "kv" ? 1 : -1) || a.order - b.order || (a.id < b.id ? -1 : 1));
      r.forEach((n, i) => { n.x = (i - (r.length - 1) / 2) * xg; n.y = -n.row * yg; });
    }
    const inputs = [...ids].filter(id => ["input", "tok", "pos"].includes(id));
    for (const id of ids) {
      const n = NODE.get(id);
      if (n.kind === "mlp") { n.x = ((maxK - 1) / 2 + 1.4) * xg; n.y = -n.row * yg; }
      else if (n.kind === "logits") { n.x = 0; n.y = -n.row * yg; }
      else if (n.kind === "input") { n.x = (inputs.indexOf(id) - (inputs.length - 1) / 2) * xg; n.y = -n.row * yg; }
    }
  }

  function refit() {
    if (userMoved || visibleNodes.size === 0) return false;
    network.fit({animation: false});
    const s = network.getScale();
    if (s > 1.25) network.moveTo({scale: 1.25, animation: false});
    const want = Math.min(CE_CONFIG.labelPx / Math.min(s, 1.25), gaps[0] / 4.4, gaps[1] / 2.4);
    const changed = Math.abs(want - fontSize) > 0.25;
    fontSize = want;
    return changed;
  }

  function neighbourhood(start, k, want) {
    const adj = new Map();
    for (const id of want) {
      const e = EDGE.get(id);
      for (const [a, b] of [[e.from, e.to], [e.to, e.from]]) {
        if (!adj.has(a)) adj.set(a, []);
        adj.get(a).push(b);
      }
    }
    const dist = new Map([[start, 0]]);
    let frontier = [start];
    for (let d = 1; d <= k; d++) {
      const next = [];
      for (const a of frontier) for (const b of adj.get(a) || []) if (!dist.has(b)) { dist.set(b, d); next.push(b); }
      frontier = next;
    }
    return dist;
  }

  function apply(next) {
    if (!next || (next.graph !== undefined && next.graph !== GRAPH_ID)) return;
    state = Object.assign({}, state, next);
    const t = state.threshold, r = state.max_rank, drop = new Set(state.drop || []);
    const groups = state.groups ? new Set(state.groups) : null, pinned = new Set(state.pinned || []);
    let want = new Set();
    for (const e of ALL) {
      if ((t === null || t === undefined || e.score >= t) && (r === null || r === undefined || e.rank < r)
          && !drop.has(e.id) && (groups === null || e.group === undefined || groups.has(e.group))) want.add(e.id);
    }
    const focus = state.focus && NODE.has(state.focus.node) ? state.focus : null;
    let used = new Set(focus ? [] : ALWAYS);
    if (focus) {
      const ball = neighbourhood(focus.node, focus.k || 1, want);
      want = new Set([...want].filter(id => ball.has(EDGE.get(id).from) && ball.has(EDGE.get(id).to)));
      used.add(focus.node);
    }
    for (const id of want) { const e = EDGE.get(id); used.add(e.from); used.add(e.to); }
    for (const id of pinned) if (NODE.has(id)) used.add(id);
    const hRaw = state.highlight || null, h = hRaw !== null && used.has(hRaw) ? hRaw : null;
    const near = new Set(h === null ? [] : [h]), weight = new Map();
    const effects = state.effects || null;
    let effMax = 0;
    for (const id of want) {
      const e = EDGE.get(id);
      if (h !== null && (e.from === h || e.to === h)) { near.add(e.from); near.add(e.to); }
      const w = effects ? Math.abs(effects[id] || 0) : Math.max(0, e.score);
      weight.set(e.from, (weight.get(e.from) || 0) + w); weight.set(e.to, (weight.get(e.to) || 0) + w);
      if (effects) effMax = Math.max(effMax, Math.abs(effects[id] || 0));
    }
    const wMax = Math.max(1e-12, ...[...used].filter(id => !ALWAYS.includes(id)).map(id => weight.get(id) || 0));
    const key = [...used].sort().join(",");
    const moved = key !== layoutKey;
    if (moved) { relayout(used); layoutKey = key; }
    const nodeList = [...used].map(id => nodeStyle(NODE.get(id), h, near,
      ALWAYS.includes(id) ? 0 : Math.min(1, (weight.get(id) || 0) / wMax), pinned.has(id)));
    shownNodes.remove([...visibleNodes].filter(id => !used.has(id)));
    shownNodes.update(nodeList);
    const sKey = JSON.stringify([h, effects === null ? null : Object.keys(effects).length + ":" + effMax]);
    const gone = [...visible].filter(id => !want.has(id));
    if (gone.length || want.size !== visible.size) window.ceChangedAt = Date.now();  // the shown edges changed
    shownEdges.remove(gone);
    const restyle = sKey !== styleKey ? [...want] : [...want].filter(id => !visible.has(id));
    shownEdges.update(restyle.map(id => edgeStyle(EDGE.get(id), h, effects, effMax)));
    styleKey = sKey;
    visible = want;
    visibleNodes = used;
    if (moved && refit()) shownNodes.update([...used].map(id => ({id: id, font: {size: fontSize, face: font, color: "#1f1f1f"}})));
    window.ceVisibleEdges = visible.size;
    window.ceVisibleNodes = [...used];
    window.ceSelected = h;
    window.ceAppliedAt = Date.now();
    window.ceApplies = (window.ceApplies || []).slice(-49).concat([window.ceAppliedAt]);  // for benchmarks
    document.body.dataset.visibleEdges = String(visible.size);
    const count = document.getElementById("ce-count");
    if (count) count.textContent = visible.size + " of " + ALL.length + " edges";
    const note = document.getElementById("ce-note");
    if (note) note.textContent = hRaw !== null && h === null ? hRaw + " (selected) has no edge at this threshold" : "";
  }

  // Same-origin iframe inside the app: borrow the page's fonts, so labels and tooltips match the page.
  try {
    const P = window.parent !== window ? window.parent.document : null;
    if (P) {
      const rules = [];
      for (const sheet of P.styleSheets) {
        let list; try { list = sheet.cssRules; } catch (err) { continue; }
        for (const rule of list) {
          if (rule.constructor.name !== "CSSFontFaceRule") continue;
          const base = sheet.href || P.baseURI;
          rules.push(rule.cssText.replace(/url\((['"]?)([^'")]+)\1\)/g, (m, q, u) => `url("${new URL(u, base).href}")`));
        }
      }
      const style = document.createElement("style");
      style.textContent = rules.join("\n");
      document.head.appendChild(style);
      font = getComputedStyle(P.body).fontFamily || font;
      document.body.style.fontFamily = font;
      document.fonts.ready.then(() => { shownNodes.update([...visibleNodes].map(id => ({id: id, font: {face: font}}))); });
    }
  } catch (err) { /* not same-origin: keep the fallback fonts */ }

  network.on("dragEnd", p => { if (!p.nodes || p.nodes.length === 0) userMoved = true; });
  network.on("zoom", () => { userMoved = true; });
  network.on("click", p => {
    if (!p.nodes || p.nodes.length === 0) return;
    const node = p.nodes[0];
    apply({highlight: node});
    if (window.parent !== window) window.parent.postMessage({ceClick: {graph: GRAPH_ID, node: node}}, "*");
  });
  window.addEventListener("message", ev => { if (ev.data && ev.data.circuitExplorer) apply(ev.data.circuitExplorer); });
  window.addEventListener("resize", () => { layoutKey = ""; userMoved = false; apply({}); });
  const fit = document.getElementById("ce-fit");
  if (fit) fit.addEventListener("click", () => { userMoved = false; layoutKey = ""; apply({}); });
  let fromParent = null;
  try { fromParent = window.parent !== window && window.parent.__circuitExplorer
        ? window.parent.__circuitExplorer[GRAPH_ID] : null; } catch (err) { fromParent = null; }
  apply(Object.assign({graph: GRAPH_ID}, fromParent || {}));
  if (window.parent === window) {  // standalone export: its own edge-count slider; its maximum shows every edge
    const range = document.getElementById("ce-range");
    document.getElementById("ce-controls").style.display = "block";
    range.max = String(ALL.length);
    range.value = String(visible.size);
    range.addEventListener("input", () => {
      const v = Number(range.value);
      apply({threshold: null, max_rank: v >= ALL.length ? null : v, drop: []});
    });
  }
  window.ceApply = apply;
  window.ceNetwork = network;
  window.ceLoadedAt = Date.now();
})();
