// Palisade gateway dashboard: one WebSocket, a snapshot then the stream.
// Every string from the server is attacker-influenced (user names, domains, JA4s):
// it only ever reaches the page through textContent, never as HTML.
"use strict";

(() => {
  const MAX_FEED = 200;
  const MAX_DOTS = 200;
  const DOT_LIFETIME_MS = 120000;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  // What the page has applied; exposed read-only for the browser test.
  const seen = { seq: 0, snapshots: 0, activities: 0, stats: 0, byRequest: new Map() };
  window.palisade = Object.freeze({
    get seq() { return seen.seq; },
    get snapshots() { return seen.snapshots; },
    get activities() { return seen.activities; },
    seenAt: (requestId) => seen.byRequest.get(requestId),
  });

  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  };
  const fmtTime = (t) => {
    const d = new Date(t);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
  };
  const fmtNum = (n) => Number(n || 0).toLocaleString();

  // ---- classification shared by the map, the feed and the legend
  function classify(a) {
    switch (a.kind) {
      case "login":
        if (a.result === "success" || a.result === "step_up_passed") return ["ok", "login ok"];
        if (a.result === "denied") return ["bad", "login denied"];
        if (a.result === "step_up") return ["warn", "step-up"];
        return ["warn", a.result === "failure" ? "login failed" : "code failed"];
      case "rate_limited": return ["bad", "429"];
      case "blocked": return ["bad", "blocked"];
      case "intel_hit": return ["bad", "intel hit"];
      case "revoked": return ["warn", "revoked"];
      case "idempotency": return ["ok", "idempotency"];
      case "detection": return [a.severity === "critical" || a.severity === "high" ? "bad" : "warn", "detection"];
      case "action": return [a.verdict === "execute" ? "warn" : "ok", "action"];
      case "key": return ["ok", "key"];
      case "ct_alert": return ["bad", "CT alert"];
      default: return ["ok", a.kind];
    }
  }
  function describe(a) {
    const who = a.origin && a.origin.ip ? a.origin.ip + (a.origin.country ? " (" + a.origin.country + ")" : "") : "";
    switch (a.kind) {
      case "login": return `${a.user} from ${who}` + (a.score != null ? `, risk ${a.score.toFixed(2)}` : "");
      case "rate_limited": return `${who} by policy ${a.policy}`;
      case "blocked": return `${who}: ${a.reason}`;
      case "intel_hit": return `${who} on ${a.list}`;
      case "revoked": return `${a.scope} ${a.subject}`;
      case "idempotency": return `${a.outcome} for ${a.client}`;
      case "detection": return `${a.event.replace(/_/g, " ")} about ${a.subject} (${a.severity}, ${a.basis}${a.region ? ", " + a.region : ""}) → incident ${a.incident}`;
      case "action": return `${a.action} ${a.verdict} (incident ${a.incident})`;
      case "key": return `${a.kid} ${a.alg} ${a.status}`;
      case "ct_alert": return `${a.domain}: ${a.summary}`;
      default: return who;
    }
  }

  // ---- map
  let projection = null;
  function drawMap() {
    if (!window.d3 || !window.topojson) return;
    fetch("/static/vendor/countries-110m.json").then((r) => r.json()).then((world) => {
      projection = d3.geoNaturalEarth1().fitExtent([[8, 8], [952, 492]], { type: "Sphere" });
      const path = d3.geoPath(projection);
      const g = $("countries");
      const features = topojson.feature(world, world.objects.countries).features;
      for (const f of features) {
        const p = document.createElementNS(SVG, "path");
        p.setAttribute("d", path(f) || "");
        const name = f.properties && f.properties.name;
        if (name) { const t = document.createElementNS(SVG, "title"); t.textContent = name; p.append(t); }
        g.append(p);
      }
      g.dataset.countries = String(features.length);
      for (const a of pendingDots.splice(0)) addDot(a);
    }).catch(() => { $("map").dataset.error = "map data unavailable"; });
  }
  const pendingDots = [];
  function addDot(a) {
    const loc = a.origin && a.origin.location;
    if (!loc) return;
    if (!projection) { pendingDots.push(a); if (pendingDots.length > MAX_DOTS) pendingDots.shift(); return; }
    const xy = projection([loc[1], loc[0]]);
    if (!xy) return;
    const [cls] = classify(a);
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", xy[0].toFixed(1));
    c.setAttribute("cy", xy[1].toFixed(1));
    c.setAttribute("r", "4");
    c.setAttribute("class", cls);
    c.dataset.born = String(Date.now());
    const t = document.createElementNS(SVG, "title");
    t.textContent = describe(a);
    c.append(t);
    const dots = $("dots");
    dots.append(c);
    while (dots.childElementCount > MAX_DOTS) dots.firstElementChild.remove();
  }
  function fadeDots() {
    const now = Date.now();
    for (const c of Array.from($("dots").children)) {
      const age = now - Number(c.dataset.born);
      if (age > DOT_LIFETIME_MS) c.remove();
      else c.setAttribute("opacity", (1 - 0.7 * age / DOT_LIFETIME_MS).toFixed(2));
    }
  }

  // ---- feed
  function addFeed(a) {
    const [cls, label] = classify(a);
    const li = el("li", { "data-seq": a.seq, "data-request-id": a.request_id },
      el("time", { datetime: a.time }, fmtTime(a.time)),
      el("span", { class: "tag " + cls }, label),
      el("span", {}, describe(a) + (a.instance ? " · on " + a.instance : "")));
    const feed = $("feed");
    feed.prepend(li);
    while (feed.childElementCount > MAX_FEED) feed.lastElementChild.remove();
  }

  // ---- stats panels
  const TILES = [
    ["login_success", "logins ok"], ["login_failure", "failed logins"], ["login_step_up", "step-ups asked"],
    ["step_up_passed", "step-ups passed"], ["login_denied", "logins denied"], ["rate_limited", "429s"],
    ["blocked", "blocked (403)"], ["intel_hits", "threat-intel hits"], ["revocations", "revocations"],
    ["idem_replay", "idempotent replays"], ["idem_coalesced", "coalesced requests"],
    ["idem_conflict", "idempotency 409s"], ["detections", "detections"], ["actions", "actions taken"],
    ["ct_alerts", "CT alerts"],
  ];
  function renderStats(stats) {
    const dl = $("counters");
    if (!dl.childElementCount) {
      for (const [key, label] of TILES) {
        dl.append(el("div", {}, el("dt", {}, label), el("dd", { id: "c-" + key }, "0")));
      }
    }
    for (const [key] of TILES) $("c-" + key).textContent = fmtNum(stats.counters[key]);

    // Logins per minute: stacked bars.
    const rates = $("rates");
    for (const r of Array.from(rates.querySelectorAll("rect"))) r.remove();
    const series = stats.series || [];
    const max = Math.max(1, ...series.map((m) => m.success + m.step_up + m.failure));
    const w = 300 / 15;
    series.forEach((m, i) => {
      let y = 120;
      for (const [v, cls] of [[m.success, "ok"], [m.step_up, "warn"], [m.failure, "bad"]]) {
        const h = (v / max) * 112;
        if (h <= 0) continue;
        y -= h;
        const r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", (i * w + 1).toFixed(1)); r.setAttribute("width", (w - 2).toFixed(1));
        r.setAttribute("y", y.toFixed(1)); r.setAttribute("height", h.toFixed(1));
        r.setAttribute("class", cls);
        rates.append(r);
      }
    });
    const last = series[series.length - 1] || { success: 0, step_up: 0, failure: 0, limited: 0, blocked: 0 };
    $("rates-text").textContent =
      `this minute: ${last.success} ok, ${last.step_up} step-up, ${last.failure} failed, ${last.limited} limited, ${last.blocked} blocked`;

    // 429 by policy, then blocks.
    const tbody = $("limits").tBodies[0];
    tbody.replaceChildren();
    for (const [policy, n] of Object.entries(stats.limited_by_policy || {})) {
      tbody.append(el("tr", {}, el("td", {}, "429 · " + policy), el("td", { class: "num" }, fmtNum(n))));
    }
    tbody.append(el("tr", {}, el("td", {}, "403 · blocked address"), el("td", { class: "num" }, fmtNum(stats.counters.blocked))));
    tbody.append(el("tr", {}, el("td", {}, "403 · threat intelligence"), el("td", { class: "num" }, fmtNum(stats.counters.intel_hits))));

    // Risk histogram.
    const risk = $("risk");
    for (const r of Array.from(risk.querySelectorAll("rect"))) r.remove();
    const hist = stats.risk_histogram || [];
    const hmax = Math.max(1, ...hist);
    hist.forEach((n, i) => {
      const h = (n / hmax) * 112;
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", (i * 30 + 2).toFixed(1)); r.setAttribute("width", "26");
      r.setAttribute("y", (120 - h).toFixed(1)); r.setAttribute("height", h.toFixed(1));
      r.setAttribute("class", i >= 7 ? "bad" : i >= 5 ? "warn" : "bar");
      risk.append(r);
    });
    const total = hist.reduce((a, b) => a + b, 0);
    const high = hist.slice(7).reduce((a, b) => a + b, 0);
    $("risk-text").textContent = `${fmtNum(total)} scored logins, ${fmtNum(high)} at 0.7 or above`;

    fillTable("top-ips", stats.top_ips, (r) => [r[0], fmtNum(r[1])]);
    fillTable("top-asns", stats.top_asns, (r) => ["AS" + r[0], fmtNum(r[1])]);
    fillTable("top-ja4", stats.top_ja4, (r) => [r[0], fmtNum(r[1])]);
    fillTable("keys", Object.entries(stats.keys || {}), (r) => [r[0], r[1][0], r[1][1]]);
  }
  function fillTable(id, rows, cells) {
    const tbody = $(id).tBodies[0];
    tbody.replaceChildren();
    if (!rows || !rows.length) {
      tbody.append(el("tr", {}, el("td", { class: "empty", colspan: "3" }, "nothing yet")));
      return;
    }
    for (const row of rows) {
      const cs = cells(row);
      tbody.append(el("tr", {}, ...cs.map((c, i) => el("td", {
        class: i === cs.length - 1 && /^[\d,]+$/.test(c) ? "num" : i === 0 ? "clip" : undefined,
        title: i === 0 ? c : undefined,
      }, c))));
    }
  }

  // ---- incidents
  // Keyed by id: in a fleet ids are the fleet's, and each incident arrives merged.
  const incidents = new Map();
  const incidentKey = (inc) => String(inc.id);
  const on = (x) => (x.instance ? ` (on ${x.instance})` : "");
  function fleetNote(inc) {
    if (!inc.instances) return "";
    const here = inc.events.some((e) => !e.instance) || inc.actions.some((a) => !a.instance);
    return ` · ${here ? "also on" : "on"} ${inc.instances.join(", ")}`;
  }
  function renderIncident(inc) {
    const key = incidentKey(inc);
    incidents.set(key, inc);
    const list = $("incident-list");
    let li = Array.from(list.children).find((n) => n.dataset.incident === key);
    const open = li ? li.querySelector("details").open : false;
    // Repeats of the same event in a row are one line with a count.
    const lines = [];
    for (const e of inc.events) {
      const text = `${e.kind.replace(/_/g, " ")} about ${e.subject} — ${e.severity}, ${e.basis} (${e.source})${on(e)}`;
      const last = lines[lines.length - 1];
      if (last && last.text === text) { last.count += 1; last.time = e.time; } else lines.push({ text, time: e.time, count: 1 });
    }
    const events = el("ul", {}, ...lines.map((l) =>
      el("li", {}, `${fmtTime(l.time)} ${l.text}` + (l.count > 1 ? ` ×${l.count}` : ""))));
    const actions = inc.actions.length
      ? el("ul", {}, ...inc.actions.map((a) =>
          el("li", {}, el("span", { class: "verdict-" + a.verdict }, `${a.action}: ${a.verdict}`),
            a.outcome ? ` — ${a.outcome}` : "", on(a), el("span", { class: "why" }, a.why))))
      : el("p", { class: "empty" }, "no action");
    const details = el("details", open ? { open: "" } : {},
      el("summary", {},
        el("span", { class: "sev " + inc.severity }, inc.severity),
        el("span", {}, `#${inc.id} ${inc.title}` + fleetNote(inc)),
        el("span", { class: "hint" }, `${inc.event_count} event${inc.event_count === 1 ? "" : "s"}, last ${fmtTime(inc.last)}`)),
      el("div", { class: "body" },
        el("p", {}, "Keys: " + inc.keys.join(", ")),
        el("h3", {}, "Events"), events,
        el("h3", {}, "Actions and why"), actions));
    const fresh = el("li", { "data-incident": key }, details);
    if (li) li.replaceWith(fresh); else list.prepend(fresh);
    // Newest activity first.
    const lastOf = (n) => Date.parse(incidents.get(n.dataset.incident).last) || 0;
    const items = Array.from(list.children).sort((a, b) => lastOf(b) - lastOf(a));
    if (items.some((n, i) => list.children[i] !== n)) list.replaceChildren(...items);
    while (list.childElementCount > 20) {
      incidents.delete(list.lastElementChild.dataset.incident);
      list.lastElementChild.remove();
    }
  }

  function addCt(a) {
    const ol = $("ct");
    const empty = ol.querySelector(".empty");
    if (empty) empty.remove();
    ol.prepend(el("li", {}, el("time", { datetime: a.time }, fmtTime(a.time)), " ", a.domain, ": ", a.summary));
    while (ol.childElementCount > 20) ol.lastElementChild.remove();
  }

  // ---- stream
  function applyActivity(a) {
    if (a.seq <= seen.seq) return; // already in the snapshot
    seen.seq = a.seq;
    seen.activities += 1;
    if (a.request_id) seen.byRequest.set(a.request_id, performance.now());
    if (seen.byRequest.size > 1000) seen.byRequest.delete(seen.byRequest.keys().next().value);
    addFeed(a);
    addDot(a);
    if (a.kind === "ct_alert") addCt(a);
    $("clock").textContent = "updated " + fmtTime(a.time);
  }
  function applySnapshot(m) {
    seen.snapshots += 1;
    seen.seq = 0;
    $("feed").replaceChildren();
    $("dots").replaceChildren();
    $("ct").replaceChildren(el("li", { class: "empty" }, "no alert"));
    for (const a of m.recent) applyActivity(a);
    seen.seq = m.seq;
    $("incident-list").replaceChildren();
    incidents.clear();
    for (const inc of m.incidents.slice().reverse()) renderIncident(inc);
    for (const a of m.ct) if (!m.recent.some((r) => r.seq === a.seq)) addCt(a);
    renderStats(m.stats);
  }
  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.onopen = () => { backoff = 500; const c = $("conn"); c.textContent = "live"; c.className = "pill on"; };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === "snapshot") applySnapshot(m);
      else if (m.type === "activity") applyActivity(m);
      else if (m.type === "incident") renderIncident(m.incident);
      else if (m.type === "stats" && m.seq >= 0) { seen.stats += 1; renderStats(m.stats); }
    };
    ws.onclose = () => {
      const c = $("conn"); c.textContent = "reconnecting…"; c.className = "pill off";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    drawMap();
    connect();
    setInterval(fadeDots, 2000);
  });
})();
