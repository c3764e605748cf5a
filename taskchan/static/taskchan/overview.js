// The queue overview: fetches data-url and rebuilds the two tables from the JSON (text only, never
// HTML), without reloading the page.  When data-push-path names the websocket where workers push
// "changed" (taskchan/progress/), it fetches on each push and polls only every PUSHED_FACTOR times
// data-refresh-ms as a fallback; without the socket (refused, not routed, dropped) it polls every
// data-refresh-ms, and tries the socket again with backoff.
(function () {
  "use strict";
  var root = document.getElementById("content-main");
  var every = parseInt(root.dataset.refreshMs, 10) || 3000;
  var updated = document.getElementById("taskchan-updated");
  var errorLine = document.getElementById("taskchan-overview-error");
  var PUSHED_FACTOR = 4;
  var pushed = false;  // the socket is subscribed: polling is only the fallback
  var timer = null, inFlight = false, again = false;

  function row(data) {
    var tr = document.createElement("tr");
    tr.dataset.key = data.key;
    if (data.idle !== undefined) { tr.dataset.idle = data.idle ? "1" : "0"; }
    data.cells.forEach(function (cell) {
      var td = document.createElement("td");
      if (cell.numeric) { td.className = cell.zero ? "num taskchan-zero" : "num"; }
      if (cell.title) { td.title = cell.title; }
      if (cell.href) {
        var a = document.createElement("a");
        a.href = cell.href;
        a.textContent = cell.text;
        td.appendChild(a);
      } else {
        td.textContent = cell.text;
      }
      if (cell.detail) {
        var detail = document.createElement("span");
        detail.className = "taskchan-quiet";
        detail.textContent = cell.detail;
        td.appendChild(detail);
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function fill(id, rows) {
    var body = document.getElementById(id);
    if (!rows.length) {
      // keep the server's "none" line, but only if it is what is shown now
      if (body.querySelector("tr.taskchan-empty")) { return; }
    }
    var fresh = document.createElement("tbody");
    fresh.id = id;
    rows.forEach(function (data) { fresh.appendChild(row(data)); });
    if (!rows.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      tr.className = "taskchan-empty";
      td.colSpan = body.parentNode.querySelectorAll("thead th").length;
      td.textContent = id === "taskchan-workers-body" ? "No worker alive." : "No channels yet.";
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    body.replaceWith(fresh);
  }

  function show(data) {
    fill("taskchan-channels-body", data.channels);
    fill("taskchan-workers-body", data.workers);
    updated.dataset.generatedAt = data.generated_at;
    updated.title = data.generated_at;
    updated.textContent = "Updated " + data.generated_text;
    errorLine.textContent = data.error || "";
    errorLine.hidden = !data.error;
  }

  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, ms);
  }

  function refresh() {
    if (inFlight) { again = true; return; }  // a push during a fetch: fetch once more after it
    inFlight = true;
    fetch(root.dataset.url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(show)
      .catch(function (err) {
        errorLine.textContent = "Could not refresh (" + err.message + "); trying again.";
        errorLine.hidden = false;
      })
      .finally(function () {
        inFlight = false;
        if (again) { again = false; schedule(0); } else { schedule(pushed ? every * PUSHED_FACTOR : every); }
      });
  }

  function listen(delay) {
    var path = root.dataset.pushPath;
    if (!path || !window.WebSocket) { return; }
    var scheme = window.location.protocol === "https:" ? "wss" : "ws";
    var socket = new WebSocket(scheme + "://" + window.location.host + path);
    socket.addEventListener("open", function () {
      socket.send(JSON.stringify({type: "subscribe", overview: true}));
    });
    socket.addEventListener("message", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.type === "subscribed") { pushed = true; root.dataset.pushed = "1"; delay = 1000; refresh(); }
      if (event.type === "changed") { refresh(); }
    });
    socket.addEventListener("close", function (event) {
      pushed = false;
      root.dataset.pushed = "0";
      schedule(every);
      if (event.code === 4403 || event.code === 4404) { return; }  // refused or not routed: poll only
      window.setTimeout(function () { listen(Math.min(delay * 2, 30000)); }, delay);
    });
  }

  // "hide idle channels": a class on the table, remembered in this browser
  var hideIdle = document.getElementById("taskchan-hide-idle");
  var channels = document.getElementById("taskchan-channels");
  function applyHideIdle() {
    channels.classList.toggle("taskchan-hide-idle", hideIdle.checked);
    try { window.localStorage.setItem("taskchan.overview.hideIdle", hideIdle.checked ? "1" : ""); } catch (e) {}
  }
  try { hideIdle.checked = window.localStorage.getItem("taskchan.overview.hideIdle") === "1"; } catch (e) {}
  hideIdle.addEventListener("change", applyHideIdle);
  applyHideIdle();

  schedule(every);
  listen(1000);
}());
