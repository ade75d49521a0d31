// Sagaflow web UI: reads the JSON API and polls it. No build step, no dependencies.
"use strict";

const STATUSES = [
  "running", "completed", "failed", "stuck",
  "compensated", "compensation_failed", "cancelled", "terminated",
];
const FINAL = ["completed", "failed", "compensated", "cancelled", "terminated"];
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() { return localStorage.getItem("sagaflowToken"); }

async function api(path, method, payload) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method: method || "GET", headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("This API needs a token.");
  }
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function showProblem(error) {
  const p = $("#problem");
  p.hidden = !error;
  p.textContent = error ? String(error.message || error) : "";
}

function fmtTime(t) { return t ? new Date(t).toISOString().replace("T", " ").replace("Z", "") : "-"; }
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}
function errorText(error) {
  if (!error) return "";
  if (error.reason) return error.reason;
  if (error.error && error.error.message) return error.error.kind + ": " + error.error.message;
  if (error.message) return (error.kind ? error.kind + ": " : "") + error.message;
  return JSON.stringify(error);
}

function setupToken() {
  $("#token-save").addEventListener("click", () => {
    localStorage.setItem("sagaflowToken", $("#token").value);
    location.reload();
  });
}

// ---- the saga list ------------------------------------------------------------------------

async function listPage() {
  const params = new URLSearchParams(location.search);
  const status = params.get("status") || "";
  $("#filter-type").value = params.get("saga_type") || "";
  $("#filter-key").value = params.get("start_key") || "";
  for (const input of ["#filter-type", "#filter-key"]) {
    $(input).addEventListener("change", () => {
      const next = new URLSearchParams(location.search);
      for (const [name, sel] of [["saga_type", "#filter-type"], ["start_key", "#filter-key"]]) {
        if ($(sel).value) next.set(name, $(sel).value); else next.delete(name);
      }
      location.search = next.toString();
    });
  }
  const filters = new URLSearchParams();
  for (const name of ["saga_type", "start_key"]) if (params.get(name)) filters.set(name, params.get(name));
  let extraPages = null; // rows loaded with "More" stop the refresh of the first page

  async function refresh() {
    try {
      const counts = await api("/api/sagas/counts?" + filters);
      const nav = $("#status-filters");
      nav.replaceChildren();
      const link = (value, label, n) => {
        const q = new URLSearchParams(filters);
        if (value) q.set("status", value);
        return el("a", { href: "/ui?" + q, class: value === status ? "active" : "", "data-status": value || "all" },
          label + " ", el("span", { class: "count" }, n));
      };
      nav.append(link("", "all", counts.total));
      for (const s of STATUSES) nav.append(link(s, s, counts.counts[s] || 0));
      if (extraPages) return;
      const q = new URLSearchParams(filters);
      if (status) q.set("status", status);
      const page = await api("/api/sagas?" + q);
      render(page, false);
      showProblem(null);
    } catch (error) { showProblem(error); }
  }

  function render(page, append) {
    const body = $("#sagas tbody");
    if (!append) body.replaceChildren();
    for (const saga of page.sagas) {
      body.append(el("tr", { "data-saga-id": saga.id, "data-status": saga.status },
        el("td", { class: "mono" }, el("a", { href: "/ui/sagas/" + saga.id }, saga.id)),
        el("td", {}, saga.saga_type),
        el("td", {}, el("span", { class: "badge " + saga.status }, saga.status)),
        el("td", { class: "mono" }, saga.start_key || "-"),
        el("td", { class: "mono" }, fmtTime(saga.updated_at)),
        el("td", {}, errorText(saga.error))));
    }
    const more = $("#more");
    more.hidden = !page.next_cursor;
    more.onclick = async () => {
      const q = new URLSearchParams(filters);
      if (status) q.set("status", status);
      q.set("cursor", page.next_cursor);
      extraPages = true;
      try { render(await api("/api/sagas?" + q), true); } catch (error) { showProblem(error); }
    };
  }

  await refresh();
  setInterval(refresh, 2000);
}

// ---- one saga -----------------------------------------------------------------------------

/// Steps, attempts and timers as the history tells them.
function timeline(saga) {
  const steps = new Map();
  const sleeps = new Map();
  const step = (n) => {
    if (!steps.has(n)) steps.set(n, { step: n, activity: "?", attempts: [], status: "scheduled" });
    return steps.get(n);
  };
  const attempt = (s, n, at) => {
    let a = s.attempts.find((x) => x.attempt === n);
    if (!a) { a = { attempt: n, sent: at }; s.attempts.push(a); }
    return a;
  };
  for (const { at, event } of saga.history) {
    const t = event.type;
    if (t === "ActivityScheduled") {
      const s = step(event.step);
      s.activity = event.activity; s.scheduled = at; s.status = "running";
      attempt(s, event.attempt || 1, at);
    } else if (t === "ActivityAttemptFailed") {
      const s = step(event.step);
      const a = attempt(s, event.attempt, at);
      a.ended = at; a.error = event.error; a.retryAt = event.retry_at;
      s.status = "backing-off";
    } else if (t === "ActivityRetried") {
      const s = step(event.step);
      attempt(s, event.attempt, at);
      s.status = "retrying";
    } else if (t === "ActivityCompleted") {
      const s = step(event.step);
      const a = attempt(s, event.attempt || 1, at);
      a.ended = at; a.ok = true; s.status = "completed"; s.ended = at;
    } else if (t === "ActivityFailed") {
      const s = step(event.step);
      const a = attempt(s, event.attempt || 1, at);
      a.ended = a.ended || at; a.error = a.error || event.error; s.status = "failed"; s.ended = at; s.error = event.error;
    } else if (t === "ActivityResultIgnored") {
      const s = step(event.step);
      (s.ignored = s.ignored || []).push(event);
    } else if (t === "TimerStarted") {
      sleeps.set(event.timer, { timer: event.timer, started: at, fireAt: event.fire_at });
    } else if (t === "TimerFired") {
      const timer = sleeps.get(event.timer) || { timer: event.timer };
      timer.fired = at; sleeps.set(event.timer, timer);
    }
  }
  return { steps: [...steps.values()], sleeps: [...sleeps.values()] };
}

const ms = (a, b) => (a && b ? new Date(b) - new Date(a) : null);

async function sagaPage() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  let timer = null;
  // Operations are published to the orchestrators (202); the page shows their effect as it polls.
  for (const button of document.querySelectorAll("#operations button")) {
    button.addEventListener("click", async () => {
      const op = button.dataset.op;
      const reason = $("#op-reason").value.trim();
      try {
        await api("/api/sagas/" + encodeURIComponent(id) + "/" + op, "POST", op === "resume" ? undefined : (reason ? { reason } : {}));
        $("#op-result").textContent = op + " requested";
      } catch (error) { $("#op-result").textContent = op + ": " + error.message; }
    });
  }
  async function refresh() {
    let saga;
    try { saga = await api("/api/sagas/" + encodeURIComponent(id)); showProblem(null); }
    catch (error) { showProblem(error); return; }
    document.title = "Sagaflow — " + saga.saga_type + " " + saga.id;
    const summary = el("dl", {},
      el("dt", {}, "Saga"), el("dd", { class: "mono", id: "saga-id" }, saga.id),
      el("dt", {}, "Type"), el("dd", {}, saga.saga_type),
      el("dt", {}, "Status"), el("dd", {}, el("span", { id: "saga-status", class: "badge " + saga.status }, saga.status)),
      el("dt", {}, "Start key"), el("dd", { class: "mono" }, saga.start_key || "-"),
      el("dt", {}, "Started"), el("dd", { class: "mono" }, fmtTime(saga.created_at)),
      el("dt", {}, "Updated"), el("dd", { class: "mono" }, fmtTime(saga.updated_at)),
      el("dt", {}, "Duration"), el("dd", {}, fmtMs(ms(saga.created_at, saga.status === "running" ? null : saga.updated_at)) || "running"),
      el("dt", {}, "Trace"), el("dd", { class: "mono" }, saga.trace_url
        ? el("a", { id: "trace-link", href: saga.trace_url, target: "_blank" }, saga.trace_id)
        : saga.trace_id),
      el("dt", {}, "Input"), el("dd", { class: "mono" }, JSON.stringify(saga.input)),
      saga.output ? [el("dt", {}, "Output"), el("dd", { class: "mono" }, JSON.stringify(saga.output))] : []);
    $("#summary").replaceChildren(summary);

    const errorBox = $("#saga-error");
    errorBox.hidden = !saga.error;
    errorBox.textContent = saga.error ? ({ stuck: "Stuck: ", cancelled: "Cancelled: ", terminated: "Terminated: ",
      compensated: "Failed, compensated: ", compensation_failed: "Compensation failed: " }[saga.status] || "Failed: ") + errorText(saga.error) : "";

    const ended = ["completed", "failed", "compensated", "cancelled", "terminated"].includes(saga.status);
    $("#operations").hidden = ended;
    $("#op-retry-compensation").hidden = saga.status !== "compensation_failed";
    $("#op-resume").hidden = saga.status !== "stuck";

    const { steps, sleeps } = timeline(saga);
    $("#timeline").replaceChildren(...steps.map((s) => el("div", { class: "step", "data-step": s.step, "data-activity": s.activity, "data-status": s.status },
      el("h3", {}, "Step " + s.step + " · " + s.activity + " ",
        el("span", { class: "badge step-status " + s.status }, s.status),
        " ", el("span", { class: "muted" }, fmtMs(ms(s.scheduled, s.ended)))),
      s.attempts.map((a) => el("div", { class: "attempt", "data-attempt": a.attempt },
        "attempt " + a.attempt + " sent " + fmtTime(a.sent),
        a.ended ? " · " + fmtMs(ms(a.sent, a.ended)) : " · waiting",
        a.ok ? " · completed" : "",
        a.error ? el("span", { class: "err" }, " · " + errorText(a.error)) : "",
        a.retryAt ? " · retry at " + fmtTime(a.retryAt) : "")),
      (s.ignored || []).map((i) => el("div", { class: "attempt muted" }, "ignored a late " + i.status + " result of attempt " + i.attempt + ": " + i.reason)))));
    if (!steps.length) $("#timeline").append(el("p", { class: "muted" }, "No steps yet."));

    const timerRows = [
      ...sleeps.map((t) => el("li", {}, "sleep " + t.timer + " started " + fmtTime(t.started) + ", due " + fmtTime(t.fireAt) + (t.fired ? ", fired " + fmtTime(t.fired) : ""))),
      ...saga.timers.map((t) => el("li", { class: "armed-timer" }, "armed: " + t.key + (t.attempt ? " (attempt " + t.attempt + ")" : "") + " at " + fmtTime(t.fire_at))),
    ];
    $("#timers").replaceChildren(timerRows.length ? el("ul", {}, timerRows) : el("p", { class: "muted" }, "None."));

    $("#history tbody").replaceChildren(...saga.history.map(({ seq, at, event }) => {
      const { type, ...rest } = event;
      return el("tr", { "data-kind": type },
        el("td", {}, seq), el("td", { class: "mono" }, fmtTime(at)), el("td", {}, type),
        el("td", { class: "mono" }, JSON.stringify(rest)));
    }));
    if (ended && timer) { clearInterval(timer); timer = null; }
  }
  await refresh();
  timer = setInterval(refresh, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const page = document.body.dataset.page;
  if (page === "list") listPage(); else if (page === "saga") sagaPage();
});
