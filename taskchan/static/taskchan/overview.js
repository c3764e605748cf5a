// The queue overview: fetches data-url every data-refresh-ms and rebuilds the two tables from the
// JSON (text only, never HTML), without reloading the page.
(function () {
  "use strict";
  var root = document.getElementById("content-main");
  var every = parseInt(root.dataset.refreshMs, 10) || 3000;
  var updated = document.getElementById("taskchan-updated");
  var errorLine = document.getElementById("taskchan-overview-error");

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

  function refresh() {
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
      .finally(function () { window.setTimeout(refresh, every); });
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

  window.setTimeout(refresh, every);
}());
