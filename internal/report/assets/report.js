(function () {
  "use strict";
  var doc = document;
  doc.documentElement.classList.add("js");

  var storeKey = "portsentry-report-zone";
  var zone = "local";
  try {
    if (window.localStorage.getItem(storeKey) === "utc") { zone = "utc"; }
  } catch (e) { /* storage may be unavailable for file:// pages */ }

  // The address may pick the zone and a filter: report.html#utc&q=203.0.113.7
  var initialQuery = "";
  var hashParts = window.location.hash.replace(/^#/, "").split("&");
  for (var h = 0; h < hashParts.length; h++) {
    var part = hashParts[h];
    if (part === "utc" || part === "local") { zone = part; }
    else if (part.indexOf("q=") === 0) {
      try { initialQuery = decodeURIComponent(part.slice(2)); } catch (e) { initialQuery = ""; }
    }
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // fields returns [year, month, day, hour, minute, second] of an epoch in the chosen zone.
  function fields(epoch) {
    var d = new Date(epoch * 1000);
    if (zone === "utc") {
      return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()];
    }
    return [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  }
  function dateText(f) { return f[0] + "-" + pad(f[1]) + "-" + pad(f[2]); }
  function timeText(f) { return pad(f[3]) + ":" + pad(f[4]) + ":" + pad(f[5]); }

  function zoneText() {
    if (zone === "utc") { return "UTC"; }
    var off = -new Date().getTimezoneOffset();
    var sign = off < 0 ? "-" : "+";
    off = Math.abs(off);
    var name = "";
    try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { name = ""; }
    var utc = "UTC" + sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
    return name ? name + ", " + utc : utc;
  }

  // renderTimes rewrites every element carrying data-f from its data-e epoch.
  function renderTimes() {
    var els = doc.querySelectorAll("[data-f]");
    var z = zone === "utc" ? " UTC" : "";
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var f = fields(Number(el.getAttribute("data-e")));
      var kind = el.getAttribute("data-f");
      var text;
      if (kind === "d") { text = dateText(f); }
      else if (kind === "t") { text = timeText(f); }
      else if (kind === "dtz") { text = dateText(f) + " " + timeText(f) + " (" + zoneText() + ")"; }
      else { text = dateText(f) + " " + timeText(f) + z; }
      el.textContent = text;
    }
    var note = doc.getElementById("tznote");
    if (note) {
      note.textContent = "Dates and times in " + (zone === "utc" ? "UTC" : "your local time (" + zoneText() + ")") +
        ", computed from the epoch. Switch with Local / UTC at the top.";
    }
    var btns = doc.querySelectorAll("[data-zone]");
    for (var j = 0; j < btns.length; j++) {
      btns[j].setAttribute("aria-pressed", btns[j].getAttribute("data-zone") === zone ? "true" : "false");
    }
    doc.documentElement.setAttribute("data-zone", zone);
  }

  var tzbox = doc.getElementById("tzbox");
  if (tzbox) {
    tzbox.hidden = false;
    tzbox.addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-zone]");
      if (!b) { return; }
      zone = b.getAttribute("data-zone");
      try { window.localStorage.setItem(storeKey, zone); } catch (e) { /* ignore */ }
      renderTimes();
      applyFilter();
    });
  }

  // The history table: sorting and filtering.
  var table = doc.getElementById("rows");
  var rows = [];
  var body = null;
  if (table) {
    body = table.tBodies[0];
    rows = Array.prototype.slice.call(body.rows);
    for (var r = 0; r < rows.length; r++) { rows[r].psIndex = r; }
  }
  var filterInput = doc.getElementById("filter");
  var protoSelect = doc.getElementById("proto");
  var shown = doc.getElementById("shown");

  function sortKey(row, col, kind) {
    var cell = row.cells[col];
    if (kind === "num") { return Number(cell.textContent); }
    if (kind === "epoch") { return Number(row.getAttribute("data-e")); }
    if (kind === "key") { return cell.getAttribute("data-k") || ""; }
    return cell.textContent.toLowerCase();
  }

  var sortCol = -1;
  var sortDir = 1;
  function sortBy(col) {
    var th = table.tHead.rows[0].cells[col];
    var kind = th.getAttribute("data-sort");
    if (sortCol === col) { sortDir = -sortDir; }
    else { sortDir = (kind === "text" || kind === "key") ? 1 : -1; }
    sortCol = col;
    var keyed = rows.map(function (row) { return { k: sortKey(row, col, kind), row: row }; });
    keyed.sort(function (a, b) {
      var ka = a.k, kb = b.k;
      // Empty text (an unresolved host name) sorts last whatever the direction.
      if (kind === "text" && (ka === "") !== (kb === "")) { return ka === "" ? 1 : -1; }
      if (ka < kb) { return -sortDir; }
      if (ka > kb) { return sortDir; }
      return a.row.psIndex - b.row.psIndex;
    });
    var frag = doc.createDocumentFragment();
    for (var i = 0; i < keyed.length; i++) { frag.appendChild(keyed[i].row); }
    body.appendChild(frag);
    var ths = table.tHead.rows[0].cells;
    for (var j = 0; j < ths.length; j++) {
      if (j === col) { ths[j].setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending"); }
      else { ths[j].removeAttribute("aria-sort"); }
    }
  }

  function applyFilter() {
    if (!table) { return; }
    var terms = (filterInput.value || "").toLowerCase().split(/\s+/).filter(Boolean);
    var proto = protoSelect.value;
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var ok = !proto || row.cells[6].textContent === proto;
      if (ok && terms.length) {
        var text = " " + Array.prototype.map.call(row.cells, function (c) { return c.textContent; }).join(" ").toLowerCase() + " ";
        for (var t = 0; t < terms.length && ok; t++) { ok = text.indexOf(terms[t]) >= 0; }
      }
      row.hidden = !ok;
      if (ok) { n++; }
    }
    shown.textContent = (n === rows.length ? "all " : n + " of ") + rows.length + " shown";
  }

  if (table) {
    doc.getElementById("controls").hidden = false;
    table.tHead.addEventListener("click", function (ev) {
      var th = ev.target.closest("th");
      if (th) { sortBy(th.cellIndex); }
    });
    var timer = 0;
    filterInput.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(applyFilter, rows.length > 5000 ? 200 : 60);
    });
    protoSelect.addEventListener("change", applyFilter);
    doc.addEventListener("click", function (ev) {
      var q = ev.target.closest("button.q");
      if (!q) { return; }
      filterInput.value = q.getAttribute("data-q");
      protoSelect.value = "";
      applyFilter();
      doc.getElementById("history").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    filterInput.value = initialQuery;
    table.tHead.rows[0].cells[0].setAttribute("aria-sort", "descending");
    sortCol = 0;
    sortDir = -1;
  }

  renderTimes();
  applyFilter();
  doc.documentElement.setAttribute("data-rendered", "1");
})();
