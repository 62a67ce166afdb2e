// The bookd console, live: polls console.json, updates the server-rendered page in
// place, and adds the controls (stop/start, redrive), which need JavaScript.
//
// The page marks what changes (see the comment at the top of console.html):
// data-bind / data-field name a path, data-fmt a format; `format` below must agree
// with the `show` macro there. Rows of lists are kept by key, so a poll never
// replaces a button under the operator's finger or loses a redrive half confirmed.

const POLL_MS = 2500;
const TOKEN_KEY = "bookd-control-token";
const DASH = "—";
const TEXT_KINDS = new Set(["text", "upper", "isoclock", "pause"]);

document.documentElement.classList.add("js");

// --- formats (mirror of the `show` macro) -------------------------------------------

let serverNow = null; // generated_at of the data on screen: ages count from it

function duration(seconds) {
  const t = Math.max(0, Math.trunc(seconds));
  const pair = (big, bigUnit, small, smallUnit) => (small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`);
  if (t < 60) return `${t} s`;
  if (t < 3600) return pair(Math.trunc(t / 60), "min", t % 60, "s");
  if (t < 86400) return pair(Math.trunc(t / 3600), "h", Math.trunc((t % 3600) / 60), "min");
  return pair(Math.trunc(t / 86400), "d", Math.trunc((t % 86400) / 3600), "h");
}

const clock = (epoch) => `${new Date(Math.trunc(epoch) * 1000).toISOString().slice(11, 19)} UTC`;

const FORMATS = {
  text: (v) => String(v),
  upper: (v) => String(v).toUpperCase(),
  isoclock: (v) => `${String(v).slice(11, 19)} UTC`,
  pause: (v) => (v ? "Paused for an outage" : "Receiving"),
  count: (v) => Math.round(v).toLocaleString("en-US"),
  duration,
  age: (v) => (typeof serverNow === "number" ? duration(serverNow - v) : DASH),
  latency: (v) => (v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(1)} s`),
  ratio: (v) => v.toFixed(2),
  clock,
};

function format(kind, value) {
  const numeric = !TEXT_KINDS.has(kind);
  if (value == null || (numeric && typeof value !== "number")) return DASH;
  return FORMATS[kind](value);
}

// --- binding data to the page -------------------------------------------------------

const lookup = (obj, path) => path.split(".").reduce((v, part) => (v != null && typeof v === "object" ? v[part] : undefined), obj);

function bindAll(root, source, attribute) {
  for (const el of root.querySelectorAll(`[${attribute}]`)) {
    if (attribute === "data-bind" && el.closest("[data-list]")) continue; // list items bind their own item
    const value = lookup(source, el.getAttribute(attribute)) ?? null;
    el.textContent = (el.dataset.prefix ?? "") + format(el.dataset.fmt ?? "text", value);
    if ("state" in el.dataset) el.dataset.state = value == null ? "unknown" : String(value);
    if ("optional" in el.dataset) el.hidden = value == null;
  }
}

const entries = (mapping) => Object.entries(mapping ?? {}).map(([key, value]) => ({ ...value, key }));

// Each list's items, each with the `key` its row is kept by.
const LISTS = {
  dependencies: (data) => entries(data.dependencies),
  queues: (data) => entries(data.queues),
  calls: (data) => Object.entries(data.calls_per_book ?? {}).map(([key, calls]) => ({ key, calls })),
  reasons: (data) => (data.dead_letters?.reasons ?? []).map((r) => ({ ...r, key: r.reason })),
};

function syncList(container, items) {
  const name = container.dataset.list;
  const template = document.getElementById(`tpl-${name}`);
  const stale = new Map([...container.children].map((row) => [row.dataset.key, row]));
  items.forEach((item, index) => {
    let row = stale.get(item.key);
    stale.delete(item.key);
    if (!row) {
      row = template.content.firstElementChild.cloneNode(true);
      row.dataset.key = item.key;
    }
    bindAll(row, item, "data-field");
    // Move a row only when out of place: moving a node drops the focus inside it.
    if (container.children[index] !== row) container.insertBefore(row, container.children[index] ?? null);
  });
  for (const row of stale.values()) row.remove();
  const empty = document.querySelector(`[data-empty="${name}"]`);
  if (empty) empty.hidden = items.length > 0;
}

// --- the chart (mirror of the `bar` macro) ------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const BASELINE = 78; // stored rise above it (up to 76), dead letters hang below (up to 20)

function chartFacts(history) {
  const stored = history?.stored ?? [];
  const dead = history?.dead_lettered ?? [];
  const numbers = (list) => list.filter((v) => typeof v === "number");
  const sum = (list) => numbers(list).reduce((a, b) => a + b, 0);
  const peak = (list) => Math.max(0, ...numbers(list));
  const minutes = Math.max(stored.length, dead.length);
  const timed = typeof history?.start === "number" && typeof history?.step_seconds === "number";
  const start = timed ? history.start : null;
  const step = timed ? history.step_seconds : null;
  return {
    stored, dead, minutes, start, step,
    stored_total: sum(stored),
    dead_total: sum(dead),
    peak: peak(stored),
    end: timed ? start + minutes * step : null,
    per_unit: Math.max(peak(stored) / 76, peak(dead) / 20) || 1,
  };
}

function svgElement(name, attributes) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  return el;
}

function bars(series, values, chart) {
  return values.flatMap((v, i) => {
    if (typeof v !== "number" || v <= 0) return [];
    const height = Math.max(v / chart.per_unit, 1.5);
    const y = series === "stored" ? BASELINE - height : BASELINE;
    const rect = svgElement("rect", { class: series, x: i * 10 + 1, y: y.toFixed(2), width: 8, height: height.toFixed(2) });
    if (chart.start != null) {
      const title = svgElement("title", {});
      title.textContent = `${clock(chart.start + i * chart.step)}: ${format("count", v)} ${series === "stored" ? "stored" : "dead-lettered"}`;
      rect.append(title);
    }
    return [rect];
  });
}

function drawChart(svg, chart) {
  const width = Math.max(chart.minutes, 1) * 10;
  svg.setAttribute("viewBox", `0 0 ${width} 100`);
  const baseline = svgElement("line", { class: "baseline", x1: 0, x2: width, y1: BASELINE, y2: BASELINE });
  svg.replaceChildren(baseline, ...bars("stored", chart.stored, chart), ...bars("dead", chart.dead, chart));
}

// --- rendering one poll's data ------------------------------------------------------

function render(data) {
  serverNow = data.generated_at;
  const chart = chartFacts(data.history);
  bindAll(document, { ...data, _chart: chart }, "data-bind");
  for (const container of document.querySelectorAll("[data-list]")) {
    syncList(container, LISTS[container.dataset.list](data));
  }
  drawChart(document.querySelector("[data-chart]"), chart);
  showControl(data.can_control === true);
}

// --- control: token, permission, requests -------------------------------------------

const tokenInput = document.getElementById("token");
const token = () => sessionStorage.getItem(TOKEN_KEY);
const authorization = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

function showControl(allowed) {
  for (const button of document.querySelectorAll("button.control")) button.disabled = !allowed;
  const why = document.getElementById("control-why");
  why.hidden = allowed;
  why.textContent = token()
    ? "bookd did not accept this token: check it, then try again."
    : "Controls are off: enter the control token (or, where bookd has none, open this page on its own machine).";
}

function say(id, text, failed = false) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.classList.toggle("failed", failed);
}

// A control request; resolves to the answer's JSON or throws with bookd's own message.
// Same-origin fetches carry Sec-Fetch-Site: same-origin, which bookd's CSRF rule asks for.
async function control(method, path, body) {
  const headers = { ...authorization(), Accept: "application/json" };
  if (body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body && JSON.stringify(body), cache: "no-store" });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.message ?? `HTTP ${response.status}`);
  return answer;
}

const now = () => clock(Date.now() / 1000);

async function steer(button) {
  const stop = button.dataset.steer === "stop";
  button.disabled = true;
  say("control-message", stop ? "Stopping the listener…" : "Starting the listener…");
  try {
    await control(stop ? "DELETE" : "POST", "./");
    say("control-message", `${stop ? "Stop" : "Start"} accepted at ${now()}.`);
  } catch (error) {
    say("control-message", `${stop ? "Stop" : "Start"} refused: ${error.message}`, true);
  } finally {
    button.disabled = false;
    poll();
  }
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// Redrive is two clicks: a dry run says how many would move, then "Move" moves them.
function showPlan(row, plan) {
  const confirm = row.querySelector(".confirm");
  const start = row.querySelector('[data-action="dry-run"]');
  confirm.hidden = !plan;
  start.hidden = Boolean(plan);
  if (!plan) return start.focus();
  const move = row.querySelector('[data-action="move"]');
  row.querySelector(".plan").textContent = plan.moved
    ? `Would move ${plural(plan.moved, "dead letter")} back to the input queue.`
    : "Nothing to move.";
  move.hidden = !plan.moved;
  move.textContent = `Move ${plan.moved}`;
  (plan.moved ? move : row.querySelector('[data-action="cancel"]')).focus();
}

async function redrive(row, button) {
  const reason = row.dataset.key;
  const dryRun = button.dataset.action === "dry-run";
  button.disabled = true;
  try {
    const result = await control("POST", "dead-letters/redrive", { reason, dry_run: dryRun });
    if (dryRun) return showPlan(row, result);
    showPlan(row, null);
    const failed = result.failed ? `; ${result.failed} could not be moved, redrive again` : "";
    say("redrive-message", `Moved ${plural(result.moved, "dead letter")} of ${reason} back to the input queue${failed}.`, Boolean(result.failed));
    poll();
  } catch (error) {
    say("redrive-message", `Redrive of ${reason} refused: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

function onReasonClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("[data-key]");
  if (button.dataset.action === "cancel") showPlan(row, null);
  else redrive(row, button);
}

// --- polling ------------------------------------------------------------------------

let timer = null;
let polling = false;

// One poll at a time; the next is scheduled only while the tab is visible.
async function poll() {
  if (polling) return;
  polling = true;
  clearTimeout(timer);
  try {
    const response = await fetch("console.json", {
      headers: { ...authorization(), Accept: "application/json" },
      cache: "no-store",
      signal: AbortSignal.timeout(2 * POLL_MS),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    say("poll-error", "");
  } catch (error) {
    const why = error.name === "TimeoutError" ? "no answer" : error.message;
    say("poll-error", `· refresh failed at ${now()} (${why}); showing older data`, true);
  } finally {
    polling = false;
    if (document.visibilityState === "visible") timer = setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") poll();
  else clearTimeout(timer);
});

// --- wiring -------------------------------------------------------------------------

tokenInput.value = token() ?? "";
tokenInput.addEventListener("input", () => {
  const value = tokenInput.value.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
});
tokenInput.addEventListener("change", poll); // the answer says whether the token is good
for (const button of document.querySelectorAll("[data-steer]")) button.addEventListener("click", () => steer(button));
document.querySelector('[data-list="reasons"]').addEventListener("click", onReasonClick);
showControl(false); // until the first poll says, with the token, what bookd allows
poll();
