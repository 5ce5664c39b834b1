(function () {
  "use strict";
  var doc = document;
  var root = doc.documentElement;
  root.classList.add("js");

  var POLL_MS = 2000;       // events and status
  var BANS_MS = 10000;      // bans, unless an event says they changed
  var TIMELINE_MS = 15000;  // the chart, unless new detections came
  var MAX_EVENTS = 200;     // rows kept in the events table
  var MAX_BANS = 500;       // rows shown in the bans table
  var unblockOn = root.getAttribute("data-unblock") === "1";

  // ---- time zone (shared with the history report) and the address ----
  var zoneKey = "portsentry-report-zone";
  var tokenKey = "portsentry-dashboard-token";
  var zone = "local";
  var token = "";
  try { if (window.localStorage.getItem(zoneKey) === "utc") { zone = "utc"; } } catch (e) { /* no storage */ }
  try { token = window.sessionStorage.getItem(tokenKey) || ""; } catch (e) { token = ""; }

  // #token=... (paste from `sudo cat`) and #utc; the token is taken out of the address
  // at once so that it stays out of the history and screenshots.
  (function () {
    var parts = window.location.hash.replace(/^#/, "").split("&");
    var keep = [];
    var took = false;
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i];
      if (p.indexOf("token=") === 0) {
        try { token = decodeURIComponent(p.slice(6)).trim(); } catch (e) { token = ""; }
        took = true;
      } else if (p === "utc" || p === "local") { zone = p; keep.push(p); }
      else if (p) { keep.push(p); }
    }
    if (took) {
      saveToken(token);
      try { window.history.replaceState(null, "", window.location.pathname + window.location.search + (keep.length ? "#" + keep.join("&") : "")); } catch (e) { /* ignore */ }
    }
  })();

  function saveToken(t) {
    token = t;
    try {
      if (t) { window.sessionStorage.setItem(tokenKey, t); } else { window.sessionStorage.removeItem(tokenKey); }
    } catch (e) { /* the token then lives until the page is left */ }
  }

  function $(id) { return doc.getElementById(id); }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function group(n) {
    var s = String(Math.floor(Math.abs(n)));
    var out = "";
    for (var i = 0; i < s.length; i++) {
      if (i > 0 && (s.length - i) % 3 === 0) { out += ","; }
      out += s.charAt(i);
    }
    return (n < 0 ? "-" : "") + out;
  }
  function el(tag, cls, text) {
    var e = doc.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fields(ms) {
    var d = new Date(ms);
    if (zone === "utc") {
      return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()];
    }
    return [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  }
  // timeText: "14:03:07" today, "2026-11-24 14:03:07" otherwise.
  function timeText(ms, withDate) {
    var f = fields(ms);
    var t = pad(f[3]) + ":" + pad(f[4]) + ":" + pad(f[5]);
    var today = fields(Date.now());
    if (withDate || f[0] !== today[0] || f[1] !== today[1] || f[2] !== today[2]) {
      t = f[0] + "-" + pad(f[1]) + "-" + pad(f[2]) + " " + t;
    }
    return zone === "utc" ? t + " UTC" : t;
  }
  function hm(ms) { var f = fields(ms); return pad(f[3]) + ":" + pad(f[4]); }
  function setTime(node, iso, withDate) {
    var ms = Date.parse(iso);
    node.setAttribute("data-ms", String(ms));
    if (withDate) { node.setAttribute("data-date", "1"); }
    node.setAttribute("datetime", iso);
    node.textContent = timeText(ms, withDate);
  }
  function renderTimes() {
    var nodes = doc.querySelectorAll("time[data-ms]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = timeText(Number(nodes[i].getAttribute("data-ms")), nodes[i].hasAttribute("data-date"));
    }
    var btns = doc.querySelectorAll("[data-zone]");
    for (var j = 0; j < btns.length; j++) {
      btns[j].setAttribute("aria-pressed", btns[j].getAttribute("data-zone") === zone ? "true" : "false");
    }
    if (timeline) { drawChart(timeline); }
  }
  // span: "3d 4h", "2h 05m", "4m 09s", "12s".
  function span(sec) {
    sec = Math.max(0, Math.floor(sec));
    var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
    if (d > 0) { return d + "d " + h + "h"; }
    if (h > 0) { return h + "h " + pad(m) + "m"; }
    if (m > 0) { return m + "m " + pad(s) + "s"; }
    return s + "s";
  }

  // ---- talking to the daemon ----
  function api(path, init) {
    init = init || {};
    init.cache = "no-store";
    init.credentials = "same-origin";
    return window.fetch(path, init).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; },
        function () { return { status: r.status, body: {} }; });
    });
  }
  function get(path) {
    return api(path).then(function (r) {
      if (r.status !== 200) { throw new Error(path + ": " + r.status); }
      return r.body;
    });
  }

  var conn = $("conn");
  var lastOK = 0;
  function connected(ok) {
    root.setAttribute("data-conn", ok ? "up" : "down");
    if (ok) {
      lastOK = Date.now();
      conn.textContent = "live · updated " + timeText(lastOK);
    } else {
      conn.textContent = "daemon not answering" + (lastOK ? " since " + timeText(lastOK) : "") + ", retrying";
    }
  }

  function message(text, kind) {
    var m = $("msg");
    m.textContent = text;
    m.className = "note" + (kind ? " " + kind : "");
    m.hidden = !text;
  }

  // ---- status ----
  var status = null, statusAt = 0;
  var counterNames = {
    hits: "Hits", detections: "Detections", ignored: "Ignored hits", responses: "Responses run",
    failures: "Response failures", queue_drops: "Queue drops", suppressed: "Held back (flood)",
    impossible: "Impossible sources", repeated: "Repeats from blocked hosts", dismissed: "Dismissed (port just taken)",
    reloads: "Reloads", capture_frames: "Packets captured", capture_probes: "Stealth probes",
    capture_malformed: "Malformed packets", capture_kernel_drops: "Kernel drops", capture_replies: "Replies to own datagrams"
  };
  var counterOrder = ["hits", "detections", "ignored", "impossible", "suppressed", "repeated", "dismissed",
    "responses", "failures", "queue_drops", "reloads", "capture_frames", "capture_probes", "capture_malformed", "capture_kernel_drops", "capture_replies"];
  var prevCounters = {};

  function showStatus(s) {
    status = s;
    statusAt = Date.now();
    var c = s.counters || {};
    $("n-bans").textContent = group(s.active_bans);
    $("backend").textContent = s.backend ? "backend " + s.backend : "no backend";
    $("n-detections").textContent = group(c.detections || 0);
    $("hits").textContent = group(c.hits || 0) + " hits · " + group(c.ignored || 0) + " ignored";
    $("reloads").textContent = (s.version ? "version " + s.version + " · " : "") + group(c.reloads || 0) + " reload" + (c.reloads === 1 ? "" : "s");
    $("version").textContent = s.version ? " · portsentry " + s.version : "";
    if (s.started && !/^0001-/.test(s.started)) { setTime($("started"), s.started, true); }
    var modes = $("modes");
    modes.textContent = "";
    for (var i = 0; i < (s.modes || []).length; i++) {
      var m = s.modes[i];
      modes.appendChild(el("span", "pill " + (/udp$/.test(m) ? "udp" : "tcp"), m));
    }
    if (!modes.firstChild) { modes.appendChild(el("span", "muted", "none")); }
    var keys = counterOrder.filter(function (k) { return k in c; });
    Object.keys(c).sort().forEach(function (k) { if (keys.indexOf(k) < 0) { keys.push(k); } });
    var body = $("counter-table").tBodies[0];
    body.textContent = "";
    keys.forEach(function (k) {
      var tr = el("tr", prevCounters[k] !== undefined && prevCounters[k] !== c[k] ? "changed" : "");
      tr.setAttribute("data-k", k);
      tr.appendChild(el("td", "", counterNames[k] || k));
      tr.appendChild(el("td", "num", group(c[k])));
      body.appendChild(tr);
      prevCounters[k] = c[k];
    });
    tickUptime();
  }
  function tickUptime() {
    if (!status) { return; }
    $("uptime").textContent = span(status.uptime_seconds + (Date.now() - statusAt) / 1000);
  }

  // ---- bans ----
  var bans = [], bansAt = 0, bansLoaded = 0;
  var banRows = [];

  function showBans(v) {
    bans = v.bans || [];
    bansAt = Date.now();
    bansLoaded = bansAt;
    var body = $("ban-table").tBodies[0];
    body.textContent = "";
    banRows = [];
    var n = Math.min(bans.length, MAX_BANS);
    for (var i = 0; i < n; i++) {
      var b = bans[i];
      var tr = el("tr");
      tr.setAttribute("data-prefix", b.prefix);
      var host = el("td", "addr", b.prefix.replace(/\/(32|128)$/, ""));
      tr.appendChild(host);
      var mode = el("td");
      if (b.mode) { mode.appendChild(el("span", "pill " + (/udp$/.test(b.mode) ? "udp" : "tcp"), b.mode)); }
      tr.appendChild(mode);
      tr.appendChild(el("td", "num", b.port || ""));
      tr.appendChild(el("td", "", (b.scan || "").trim()));
      tr.appendChild(el("td", "muted", b.origin ? "fleet: " + b.origin : (b.by || "")));
      tr.appendChild(el("td", "num", b.offences));
      var since = el("td");
      var t = el("time");
      setTime(t, b.start);
      since.appendChild(t);
      tr.appendChild(since);
      var left = el("td", "remaining");
      var text = el("span", "left");
      left.appendChild(text);
      var bar = null;
      if (b.permanent) {
        text.textContent = "permanent";
        text.className = "left perm";
      } else {
        var meter = el("span", "meter");
        bar = el("i");
        meter.appendChild(bar);
        left.appendChild(meter);
      }
      tr.appendChild(left);
      if (unblockOn) {
        var act = el("td", "num");
        var btn = el("button", "btn unblock", "Unblock");
        btn.type = "button";
        btn.setAttribute("data-prefix", b.prefix);
        act.appendChild(btn);
        tr.appendChild(act);
      }
      body.appendChild(tr);
      var total = b.permanent ? 0 : (Date.parse(b.until) - Date.parse(b.start)) / 1000;
      banRows.push({ tr: tr, text: text, bar: bar, left: b.remaining_seconds, total: total, permanent: b.permanent });
    }
    $("no-bans").hidden = bans.length > 0;
    var more = $("ban-more");
    more.hidden = bans.length <= MAX_BANS;
    more.textContent = "Showing the newest " + group(MAX_BANS) + " of " + group(bans.length) + " bans; /api/bans has them all.";
    $("n-bans").textContent = group(bans.length);
    tickBans();
  }

  // tickBans counts every ban down from the remaining time the daemon gave, so the
  // browser's clock need not agree with the daemon's.
  function tickBans() {
    var gone = (Date.now() - bansAt) / 1000;
    var expired = false;
    for (var i = 0; i < banRows.length; i++) {
      var r = banRows[i];
      if (r.permanent) { continue; }
      var left = r.left - gone;
      if (left <= 0) {
        if (!r.tr.classList.contains("expired")) { r.tr.classList.add("expired"); expired = true; }
        r.text.textContent = "expiring";
        if (r.bar) { r.bar.style.width = "0%"; }
        continue;
      }
      r.text.textContent = span(Math.ceil(left));
      if (r.bar && r.total > 0) { r.bar.style.width = Math.max(2, Math.min(100, left / r.total * 100)).toFixed(1) + "%"; }
    }
    if (expired) { setTimeout(refreshBans, 1500); }
  }

  function refreshBans() {
    return get("/api/bans").then(showBans);
  }

  // ---- unblocking ----
  function showToken() {
    if (!unblockOn) { return; }
    $("tokenbox").hidden = false;
    $("tokenform").hidden = !!token;
    $("tokenset").hidden = !token;
  }
  if (unblockOn) {
    $("tokenform").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var v = $("token").value.trim();
      $("token").value = "";
      saveToken(v);
      showToken();
      if (v) { message("Token kept for this tab. Unblock buttons are ready.", "good"); }
    });
    $("forget").addEventListener("click", function () {
      saveToken("");
      showToken();
      message("");
    });
    $("ban-table").addEventListener("click", function (ev) {
      var btn = ev.target.closest("button.unblock");
      if (!btn || btn.disabled) { return; }
      var prefix = btn.getAttribute("data-prefix");
      if (!token) {
        message("Paste the unblock token first: sudo cat the token file named in the box above.", "bad");
        $("token").focus();
        return;
      }
      if (!btn.classList.contains("armed")) {
        btn.classList.add("armed");
        btn.textContent = "Confirm";
        setTimeout(function () { btn.classList.remove("armed"); btn.textContent = "Unblock"; }, 4000);
        return;
      }
      btn.disabled = true;
      api("/api/unblock", {
        method: "POST",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify({ prefix: prefix })
      }).then(function (r) {
        if (r.status === 200) {
          var n = (r.body.unblocked || []).length;
          message("Unblocked " + prefix + (n === 1 ? "" : " (" + n + " bans lifted)") + ".", "good");
          var tr = btn.closest("tr");
          if (tr) { tr.classList.add("expired"); }
        } else if (r.status === 401) {
          saveToken("");
          showToken();
          message("The daemon refused the token (it changes at every start). Paste the current one.", "bad");
          btn.disabled = false;
        } else {
          message("Unblock failed: " + (r.body.error || r.status), "bad");
          btn.disabled = false;
        }
        refreshBans().catch(function () { /* next poll */ });
        get("/api/status").then(showStatus, function () { /* next poll */ });
      }, function () {
        message("Unblock failed: the daemon is not answering.", "bad");
        btn.disabled = false;
      });
    });
  }
  showToken();

  // ---- events ----
  var lastID = 0, firstLoad = true;
  var evBody = $("event-table").tBodies[0];
  var filterInput = $("filter"), kindSelect = $("kind");

  function eventRow(e, fresh) {
    var tr = el("tr", fresh ? "fresh" : "");
    tr.setAttribute("data-id", String(e.id));
    tr.setAttribute("data-kind", e.kind);
    var td = el("td");
    var t = el("time");
    setTime(t, e.time);
    td.appendChild(t);
    tr.appendChild(td);
    var k = el("td");
    k.appendChild(el("span", "pill k-" + e.kind, e.kind));
    tr.appendChild(k);
    var host = el("td", "addr", e.addr);
    if (e.name && e.name !== e.addr) { host.appendChild(el("div", "name", e.name)); }
    tr.appendChild(host);
    tr.appendChild(el("td", "num", e.port ? e.port + (e.proto ? "/" + e.proto.toLowerCase() : "") : ""));
    tr.appendChild(el("td", "", e.mode || ""));
    tr.appendChild(el("td", "text", e.text));
    return tr;
  }

  function addEvents(list, fresh) {
    var frag = doc.createDocumentFragment();
    for (var i = list.length - 1; i >= 0; i--) { frag.appendChild(eventRow(list[i], fresh)); }
    evBody.insertBefore(frag, evBody.firstChild);
    while (evBody.rows.length > MAX_EVENTS) { evBody.deleteRow(evBody.rows.length - 1); }
    applyFilter();
  }

  function applyFilter() {
    var terms = (filterInput.value || "").toLowerCase().split(/\s+/).filter(Boolean);
    var kind = kindSelect.value;
    var shown = 0;
    for (var i = 0; i < evBody.rows.length; i++) {
      var row = evBody.rows[i];
      var ok = !kind || row.getAttribute("data-kind") === kind;
      if (ok && terms.length) {
        var text = row.textContent.toLowerCase();
        for (var t = 0; t < terms.length && ok; t++) { ok = text.indexOf(terms[t]) >= 0; }
      }
      row.hidden = !ok;
      if (ok) { shown++; }
    }
    var n = evBody.rows.length;
    $("no-events").hidden = n > 0;
    $("ev-count").textContent = n === 0 ? "" : (shown === n ? "newest " + n : shown + " of the newest " + n) + " · event " + group(lastID);
  }
  filterInput.addEventListener("input", applyFilter);
  kindSelect.addEventListener("change", applyFilter);

  // ---- the chart ----
  var timeline = null, timelineAt = 0;
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = doc.createElementNS(SVG, tag);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, String(attrs[k])); } }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function niceScale(top) {
    if (top <= 0) { return [1, 1]; }
    var raw = top / 4;
    var mag = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var step = 1;
    var ms = [1, 2, 5, 10];
    for (var i = 0; i < ms.length; i++) {
      if (ms[i] * mag >= raw) { step = Math.max(1, Math.round(ms[i] * mag)); break; }
    }
    return [step, Math.ceil(top / step) * step];
  }
  function drawChart(tl) {
    timeline = tl;
    var c = $("chart");
    while (c.firstChild) { c.removeChild(c.firstChild); }
    var W = 640, H = 190, left = 40, right = W - 10, top = 10, base = H - 28, plotH = base - top;
    var counts = tl.minute || [];
    var peak = 0;
    for (var i = 0; i < counts.length; i++) { peak = Math.max(peak, counts[i]); }
    var sc = niceScale(peak), step = sc[0], yMax = sc[1];
    for (var v = 0; v <= yMax; v += step) {
      var y = base - v / yMax * plotH;
      c.appendChild(svg("line", { "class": "grid", x1: left, x2: right, y1: y, y2: y }));
      c.appendChild(svg("text", { "class": "ylab", x: left - 6, y: y }, group(v)));
    }
    var start = Date.parse(tl.start);
    var slot = (right - left) / Math.max(1, counts.length);
    var gap = Math.min(slot * 0.2, 3);
    for (var j = 0; j < counts.length; j++) {
      var n = counts[j];
      var h = n / yMax * plotH;
      if (n > 0) { h = Math.max(h, 1.5); }
      var x = left + j * slot;
      var g = svg("g", { "class": "b" });
      g.appendChild(svg("rect", { "class": "hit", x: x, y: top, width: slot, height: plotH }));
      g.appendChild(svg("rect", { "class": "bar" + (j === counts.length - 1 ? " now" : ""), "data-n": n,
        x: (x + gap / 2).toFixed(2), y: (base - h).toFixed(2), width: (slot - gap).toFixed(2), height: h.toFixed(2) }));
      g.appendChild(svg("title", {}, hm(start + j * 60000) + ": " + group(n) + " detection" + (n === 1 ? "" : "s")));
      c.appendChild(g);
      var minute = Math.round((start + j * 60000) / 60000);
      if (minute % 10 === 0) {
        c.appendChild(svg("line", { "class": "axis", x1: x, x2: x, y1: base, y2: base + 4 }));
        c.appendChild(svg("text", { "class": "xlab", x: x, y: base + 18 }, hm(start + j * 60000)));
      }
    }
    c.appendChild(svg("line", { "class": "axis", x1: left, x2: right, y1: base, y2: base }));
    $("tl-total").textContent = group(tl.total || 0) + " in the last hour";
  }

  // ---- the loop ----
  var busy = false;
  function poll() {
    if (busy) { return; }
    busy = true;
    var since = lastID;
    var url = "/api/events?max=" + MAX_EVENTS + (firstLoad ? "" : "&since=" + since);
    get(url).then(function (page) {
      if (page.reset) { evBody.textContent = ""; }
      var list = page.events || [];
      var bansChanged = false, detections = false;
      for (var i = 0; i < list.length; i++) {
        var k = list[i].kind;
        if (k === "ban" || k === "unban" || k === "expire") { bansChanged = true; }
        if (k === "detection") { detections = true; }
      }
      lastID = page.last;
      if (list.length) { addEvents(list, !firstLoad); } else { applyFilter(); }
      var now = Date.now();
      var jobs = [get("/api/status").then(showStatus)];
      if (firstLoad || bansChanged || now - bansLoaded >= BANS_MS) { jobs.push(refreshBans()); }
      if (firstLoad || detections || now - timelineAt >= TIMELINE_MS) {
        jobs.push(get("/api/timeline").then(function (tl) { timelineAt = Date.now(); drawChart(tl); }));
      }
      firstLoad = false;
      return Promise.all(jobs);
    }).then(function () {
      connected(true);
    }, function () {
      connected(false);
    }).then(function () {
      busy = false;
      root.setAttribute("data-polls", String(Number(root.getAttribute("data-polls") || 0) + 1));
      setTimeout(poll, POLL_MS);
    });
  }

  var tzbox = $("tzbox");
  tzbox.hidden = false;
  tzbox.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-zone]");
    if (!b) { return; }
    zone = b.getAttribute("data-zone");
    try { window.localStorage.setItem(zoneKey, zone); } catch (e) { /* ignore */ }
    renderTimes();
  });

  setInterval(function () { tickBans(); tickUptime(); }, 1000);
  renderTimes();
  poll();
})();
