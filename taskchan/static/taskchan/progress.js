/* taskchan: live progress of messages over a websocket (docs/progress.md).
 *
 *   const watch = TaskchanProgress.bind(token, messageId, {
 *     progress: document.getElementById("bar"),    // a <progress> element
 *     status: document.getElementById("status"),  // a status line
 *     onEvent: (event) => { ... },                  // every event, optional
 *   });
 *
 * or TaskchanProgress.watch(token, {onEvent}) for the raw events.  The socket
 * (default: /progress/ on this host) reconnects with backoff, subscribes again
 * and is sent the current state again; it stops once every message it
 * watches has ended, or when the server refuses the token.  No build step, no
 * dependency.
 */
(function (global) {
  "use strict";

  const ENDED = new Set(["succeeded", "failed"]);
  const REFUSED = new Set([4400, 4401, 4403]);

  function defaultUrl() {
    const scheme = global.location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${global.location.host}/progress/`;
  }

  function endedState(event) {
    if (ENDED.has(event.type)) return event.type;
    if (event.type === "state" && ENDED.has(event.state)) return event.state;
    return null;
  }

  /* Watch the messages a token names; returns {close(), socket()}. */
  function watch(token, options) {
    const opts = Object.assign(
      { url: defaultUrl(), onEvent() {}, onSocket() {}, minDelay: 500, maxDelay: 10000 },
      options || {});
    const ended = new Set();
    let known = null;  // ids the server said the token names (from its state events)
    let socket = null;
    let delay = opts.minDelay;
    let stopped = false;
    let timer = null;

    function allEnded() {
      return known !== null && known.size > 0 && [...known].every((id) => ended.has(id));
    }

    function connect() {
      if (stopped) return;
      socket = new WebSocket(opts.url);
      opts.onSocket("connecting", socket);
      socket.addEventListener("open", () => {
        delay = opts.minDelay;
        known = new Set();
        socket.send(JSON.stringify({ type: "subscribe", token: token }));
        opts.onSocket("open", socket);
      });
      socket.addEventListener("message", (message) => {
        let event;
        try { event = JSON.parse(message.data); } catch (error) { return; }
        if (event.type === "state" && known) known.add(event.id);
        const end = endedState(event);
        if (end) ended.add(event.id);
        opts.onEvent(event);
        if (allEnded()) stop();
      });
      socket.addEventListener("close", (event) => {
        opts.onSocket("closed", socket, event.code);
        if (stopped) return;
        if (REFUSED.has(event.code)) { stopped = true; return; }
        // Back off (with jitter) so that a server restart is not met by every page at once.
        timer = setTimeout(connect, delay * (0.75 + Math.random() / 2));
        delay = Math.min(delay * 2, opts.maxDelay);
      });
    }

    function stop() {
      stopped = true;
      clearTimeout(timer);
      if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
    }

    connect();
    return { close: stop, socket: () => socket };
  }

  function describe(event, attempt) {
    const again = attempt > 1 ? `attempt ${attempt}: ` : "";
    switch (event.type) {
      case "progress": {
        const of = event.total != null ? ` of ${event.total}` : "";
        return `${again}${event.note || `${event.current}${of}`}`;
      }
      case "started": return `Retrying: attempt ${event.attempt} started`;
      case "retrying": {
        const at = new Date(event.next_at * 1000).toLocaleTimeString();
        return `Attempt ${event.attempt} failed (${event.error}); retrying at ${at}`;
      }
      case "succeeded": return event.has_result ? `Done: ${JSON.stringify(event.result)}` : "Done";
      case "failed": return `Failed: ${event.error}`;
      case "error": return `Cannot watch: ${event.error}`;
      default: return "";
    }
  }

  /* Show one message in a <progress> element and a status line. */
  function bind(token, messageId, elements) {
    const bar = elements.progress;
    const line = elements.status;
    const onEvent = elements.onEvent || function () {};
    let attempt = 0;
    let lastAt = 0;
    let done = false;

    function show(state, text) {
      if (line) { line.dataset.state = state; line.textContent = text; }
      if (bar) bar.dataset.state = state;
    }

    function showProgress(value) {
      if (!bar || !value) return;
      if (value.total != null) { bar.max = value.total; bar.value = value.current; }
      else bar.removeAttribute("value");  // indeterminate
    }

    function apply(event) {
      if (event.id !== undefined && event.id !== messageId) return;
      if (event.type === "error") { show("refused", describe(event, attempt)); return; }
      if (done) return;  // nothing after the outcome (a late check, a duplicate)
      if (event.progress && event.type !== "state") apply(event.progress);  // an outcome's last value
      if (event.type === "state") {
        attempt = Math.max(attempt, event.attempt || 0);
        if (event.state === "succeeded") {
          apply({ type: "succeeded", id: event.id, result: event.result, has_result: "result" in event });
          return;
        }
        if (event.state === "failed") { apply({ type: "failed", id: event.id, error: event.error || "" }); return; }
        if (event.progress && (event.progress.at || 0) >= lastAt) {
          lastAt = event.progress.at || 0;
          showProgress(event.progress);
          show(event.state, describe(Object.assign({ type: "progress" }, event.progress), attempt));
        } else if (event.error && event.next_at) {
          show("retrying", describe({ type: "retrying", attempt: event.attempt, error: event.error,
                                      next_at: event.next_at }, attempt));
        } else {
          show(event.state, event.state === "running" ? `Running${attempt > 1 ? ` (attempt ${attempt})` : ""}`
                                                      : event.state[0].toUpperCase() + event.state.slice(1));
        }
        return;
      }
      if (event.type === "progress") {
        if ((event.attempt || 0) < attempt || (event.at || 0) < lastAt) return;  // stale
        attempt = event.attempt || attempt;
        lastAt = event.at || lastAt;
        showProgress(event);
        show("running", describe(event, attempt));
      } else if (event.type === "started") {
        attempt = Math.max(attempt, event.attempt);
        show("retrying", describe(event, attempt));
      } else if (event.type === "retrying") {
        show("retrying", describe(event, attempt));
      } else if (event.type === "succeeded") {
        done = true;
        if (bar) { if (!bar.hasAttribute("value") && !bar.max) bar.max = 1; bar.value = bar.max; }
        show("succeeded", describe(event, attempt));
      } else if (event.type === "failed") {
        done = true;
        show("failed", describe(event, attempt));
      }
    }

    return watch(token, Object.assign({}, elements, {
      onEvent(event) { apply(event); onEvent(event); },
    }));
  }

  global.TaskchanProgress = { watch: watch, bind: bind, describe: describe };
})(window);
