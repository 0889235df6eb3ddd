// Live status: poll the JSON endpoint and redraw while the saga runs.
// Progressive enhancement: the server-rendered page is complete without this.
(function () {
  "use strict";
  const root = document.getElementById("booking");
  if (!root) return;
  const url = root.dataset.statusUrl;
  const every = Number(root.dataset.pollMs) || 1000;
  // Statuses whose forms the server draws (operator actions, confirm/decline):
  // entering or leaving one reloads the page instead of redrawing it here.
  const serverDrawn = new Set(["NEEDS_ATTENTION", "AWAITING_CONFIRMATION"]);

  // Hold and confirm: count down to the deadline. The server sends the
  // seconds left (its clock, not the browser's); each poll re-syncs.
  const countdown = document.getElementById("countdown");
  let timeUpAt = null;  // performance.now() when the window closes

  function remainingText(seconds) {
    if (seconds <= 0) return "time is up";
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (h) return h + " h " + two(m) + " min";
    return m ? m + " min " + two(s) + " s" : s + " s";
  }

  function tick() {
    if (!countdown || timeUpAt === null) return;
    countdown.textContent = remainingText(Math.max(0, Math.floor((timeUpAt - performance.now()) / 1000)));
  }

  function syncCountdown(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return;
    timeUpAt = performance.now() + Number(seconds) * 1000;
    tick();
  }

  if (countdown) {
    syncCountdown(countdown.dataset.remainingS);
    setInterval(tick, 1000);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function undoText(step) {
    if (step.undo_outcome) {
      return step.undo_outcome + (step.undo_attempts > 1 ? " after " + step.undo_attempts + " attempts" : "");
    }
    if (step.undo_error) return "failed: " + step.undo_error;
    if (step.state === "compensating" && step.undo_attempts > 1) return "attempt " + step.undo_attempts;
    return "";
  }

  function render(data) {
    const badge = document.getElementById("saga-status");
    badge.textContent = data.status.replace(/_/g, " ").toLowerCase().replace(/^./, (c) => c.toUpperCase());
    badge.className = "badge badge-" + data.status.toLowerCase();
    const pausedBadge = document.getElementById("paused");
    if (pausedBadge) pausedBadge.hidden = !data.paused;
    const body = document.getElementById("steps");
    if (data.steps.length) {
      body.replaceChildren(...data.steps.map((step) => {
        const tr = document.createElement("tr");
        tr.dataset.step = step.name;
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = step.name;
        const state = document.createElement("span");
        state.className = "state state-" + step.state;
        state.textContent = step.state;
        const stateCell = document.createElement("td");
        stateCell.append(state);
        if (step.paused) {
          const paused = document.createElement("span");
          paused.className = "state state-paused";
          paused.textContent = "paused";
          stateCell.append(" ", paused);
        }
        const kind = cell(step.kind || "compensatable");
        kind.className = "kind kind-" + (step.kind || "compensatable");
        tr.append(th, kind, stateCell, cell(step.attempts || ""), cell(step.confirmation || ""), cell(undoText(step)));
        return tr;
      }));
    }
    document.getElementById("plan").textContent = data.compensation_plan.join(" → ") || "nothing";
    const failure = document.getElementById("failure");
    if (data.failure) {
      failure.hidden = false;
      failure.textContent = (data.failure.step ? data.failure.step + " failed: " : "") +
        data.failure.type + ": " + data.failure.message;
    }
    document.getElementById("attention").hidden =
      !["ROLLBACK_INCOMPLETE", "NEEDS_ATTENTION", "TRIP_INCOMPLETE"].includes(data.status);
    document.getElementById("outstanding").textContent = data.outstanding.join(", ");
    document.getElementById("pivot").hidden = !data.past_pivot;
    if (data.ticket) {
      document.getElementById("ticket-number").textContent = data.ticket;
      document.getElementById("ticket").hidden = false;
    }
    if (data.confirmation) syncCountdown(data.confirmation.remaining_s);
    const cancel = document.getElementById("cancel-form");  // only for the booking browser and operators
    if (cancel) cancel.hidden = data.closed;
    root.dataset.live = data.status;
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.ok) {
        const data = await response.json();
        // The operator's forms, the audit trail and the confirmation banner are
        // drawn by the server: entering or leaving their status redraws the page.
        const rendered = root.dataset.rendered;
        if (data.status !== rendered && (serverDrawn.has(data.status) || serverDrawn.has(rendered))) {
          window.location.reload();
          return;
        }
        render(data);
        // Closed is final whatever the status says: a terminated or timed-out
        // run never reaches a saga status of its own.
        if (data.closed) {
          root.dataset.polling = "stopped";
          return;
        }
      }
    } catch (err) {
      // Network hiccup: keep the last good state and try again.
    }
    setTimeout(poll, every);
  }

  poll();
})();
