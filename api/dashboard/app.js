// oec's dashboard: one ES module, no framework, only the public API.
// The session lives in memory (a reload signs out); the access token is
// refreshed with the refresh token when it expires.

const API = "/api/v1";
const session = { access: null, refresh: null, email: null };
const main = document.getElementById("main");
let leave = null; // the current page's cleanup (closes its event stream)

// --- DOM ------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function show(title, ...content) {
  document.title = `${title} · oec`;
  main.replaceChildren(h("h1", {}, title), ...content);
  main.focus({ preventScroll: true });
}

function crumbs(items) {
  document.getElementById("crumbs").replaceChildren(
    ...items.map(([label, href]) => h("li", {}, href ? h("a", { href }, label) : label)),
  );
}

export function toast(text, kind = "") {
  const t = h("div", { class: `toast ${kind}` }, text);
  document.getElementById("toasts").append(t);
  setTimeout(() => t.remove(), 6000);
}

const badge = (status) => h("span", { class: `badge s-${status}` }, status);
const secs = (s) => (s === null || s === undefined ? "" : `${Number(s).toFixed(1)}s`);
const when = (t) => (t ? new Date(t).toLocaleString() : "");

// --- API ------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
  }
}

async function refresh() {
  if (!session.refresh) return false;
  const r = await fetch(`${API}/auth/refresh`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refresh }),
  });
  if (!r.ok) return false;
  const t = await r.json();
  session.access = t.access_token;
  session.refresh = t.refresh_token;
  return true;
}

async function api(path, { method = "GET", body } = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch(`${API}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${session.access}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    if (r.status === 401 && attempt === 0 && (await refresh())) continue;
    if (r.status === 401) {
      signOut();
      throw new ApiError(401, { message: "Your session ended; sign in again." });
    }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }
}

// --- Sign in --------------------------------------------------------------
function signOut() {
  if (session.refresh) {
    fetch(`${API}/auth/logout`, {
      method: "POST",
      headers: { authorization: `Bearer ${session.access}`, "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh }),
    }).catch(() => {});
  }
  session.access = session.refresh = null;
  document.getElementById("signout").hidden = true;
  route();
}

function signIn() {
  crumbs([]);
  const error = h("p", { class: "error", role: "alert", id: "signin-error" });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "signin-title", onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      const r = await fetch(`${API}/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: email.value, password: password.value }),
      });
      const t = await r.json().catch(() => ({}));
      if (!r.ok) {
        error.textContent = t.message || "Signing in failed.";
        return;
      }
      session.access = t.access_token;
      session.refresh = t.refresh_token;
      session.email = email.value;
      document.getElementById("signout").hidden = false;
      route();
    } },
    h("h1", { id: "signin-title" }, "Sign in to oec"),
    h("label", { for: "email" }, "Email", email),
    h("label", { for: "password" }, "Password", password),
    error,
    h("button", { class: "btn", type: "submit", id: "signin" }, "Sign in"),
  );
  document.title = "Sign in · oec";
  main.replaceChildren(form);
  email.focus();
}

// --- Pages ----------------------------------------------------------------
async function organizations() {
  crumbs([["Organizations"]]);
  const orgs = await api("/organizations?limit=500");
  show("Organizations", orgs.length
    ? h("ul", { class: "list" }, orgs.map((o) => h("li", {}, h("a", { href: `#/org/${o.id}` }, h("span", {}, o.name), h("span", { class: "muted" }, o.slug)))))
    : h("p", { class: "muted" }, "No organization is visible to you yet."));
}

async function organization(id) {
  const [org, projects] = await Promise.all([api(`/organizations/${id}`), api(`/projects?organization_id=${id}&limit=500`)]);
  crumbs([["Organizations", "#/"], [org.name]]);
  show(org.name, h("h2", {}, "Projects"), projects.length
    ? h("ul", { class: "list" }, projects.map((p) => h("li", {}, h("a", { href: `#/project/${p.id}` }, h("span", {}, p.name), h("span", { class: "muted" }, p.git_branch)))))
    : h("p", { class: "muted" }, "No project yet."));
}

async function project(id) {
  const p = await api(`/projects/${id}`);
  const org = await api(`/organizations/${p.organization_id}`);
  crumbs([["Organizations", "#/"], [org.name, `#/org/${org.id}`], [p.name]]);
  const envs = await api(`/environments?project_id=${id}&limit=500`);
  const rows = await Promise.all(envs.map(async (e) => [e, await api(`/deployments/environment/${e.id}/latest`)]));
  const list = rows.length
    ? h("ul", { class: "list", id: "environments" }, rows.map(([e, l]) => h("li", {}, h("a", { href: `#/env/${e.id}` },
      h("span", {}, h("strong", {}, e.name), " ", h("span", { class: "muted" }, e.hostname || "")),
      h("span", {}, badge(e.status), " ", l.has_deployment ? h("span", { class: "muted" }, `v${l.version} `, badge(l.status)) : h("span", { class: "muted" }, "never deployed"))))))
    : h("p", { class: "muted" }, "No environment yet.");
  let stats = h("p", { class: "muted" }, "No statistics (you may not list this project's deployments).");
  try {
    stats = statsView(await api(`/deployments/project/${id}/stats`));
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  show(p.name, h("h2", {}, "Environments"), list, h("h2", {}, "Deployments"), stats);
}

function statsView(s) {
  const d = s.last_30_days;
  const stages = Object.entries(d.avg_stage_duration_seconds || {});
  const max = Math.max(0.001, ...stages.map(([, v]) => v));
  return h("section", { class: "card", "aria-label": "Deployment statistics" },
    h("div", { class: "stats" },
      h("div", {}, h("strong", {}, `${s.success_rate}%`), "success rate"),
      h("div", {}, h("strong", {}, s.total_deployments), "deployments"),
      h("div", {}, h("strong", {}, secs(d.p50_duration_seconds) || "–"), "p50 duration (30 days)"),
      h("div", {}, h("strong", {}, secs(d.p95_duration_seconds) || "–"), "p95 duration (30 days)")),
    stages.length
      ? h("div", { class: "chart", role: "img", "aria-label": "Average seconds per stage" },
        stages.map(([step, v]) => {
          // Through the CSSOM: the policy allows no inline style attribute.
          const barv = h("div", { class: "barv" });
          barv.style.width = `${(100 * v) / max}%`;
          return h("div", { class: "row" }, h("span", {}, step), barv, h("span", { class: "muted" }, secs(v)));
        }))
      : h("p", { class: "muted" }, "No finished stage in the last 30 days."));
}

async function environment(id) {
  const e = await api(`/environments/${id}`);
  const p = await api(`/projects/${e.project_id}`);
  crumbs([["Organizations", "#/"], [p.name, `#/project/${p.id}`], [e.name]]);
  const history = await api(`/deployments?environment_id=${id}&limit=50`);
  const active = history.find((d) => d.status === "pending" || d.status === "running");
  const act = (label, cls, fn) => h("button", { class: `btn ${cls}`, type: "button", onclick: async (ev) => {
    ev.target.disabled = true;
    try {
      await fn();
    } catch (err) {
      toast(err.message, "bad");
      ev.target.disabled = false;
    }
  } }, label);
  const deploy = act("Deploy", "", async () => {
    const d = await api("/deployments", { method: "POST", body: { environment_id: id } });
    location.hash = `#/deployment/${d.id}`;
  });
  deploy.id = "deploy";
  const actions = h("div", { class: "actions" }, deploy,
    active ? act("Cancel", "danger", async () => { await api(`/deployments/${active.id}/cancel`, { method: "POST", body: {} }); toast("Cancel requested."); route(); }) : null);
  const redeploy = (d) => act("Redeploy this commit", "secondary", async () => {
    const r = await api(`/deployments/${d.id}/redeploy`, { method: "POST", body: {} });
    location.hash = `#/deployment/${r.id}`;
  });
  const row = (d) => h("tr", {},
    h("td", {}, h("a", { href: `#/deployment/${d.id}` }, `v${d.version}`)),
    h("td", {}, badge(d.status)),
    h("td", {}, d.trigger),
    h("td", {}, d.triggered_by ? d.triggered_by.slice(0, 8) : ""),
    h("td", {}, h("code", {}, (d.git_commit || "").slice(0, 10))),
    h("td", {}, secs(d.duration_seconds)),
    h("td", {}, when(d.started_at || d.created_at)),
    h("td", {}, d.git_commit ? redeploy(d) : null));
  const head = h("tr", {}, ["Version", "Status", "Trigger", "Who", "Commit", "Duration", "Started", ""].map((c) => h("th", { scope: "col" }, c)));
  const table = h("div", { class: "table-wrap" },
    h("table", { id: "history" },
      h("caption", { class: "muted" }, "Deployment history"),
      h("thead", {}, head),
      h("tbody", {}, history.map(row))));
  show(e.name,
    h("p", {}, badge(e.status), " ", e.hostname ? h("a", { href: `https://${e.hostname}`, rel: "noopener" }, e.hostname) : "", " ",
      h("span", { class: "muted" }, `Odoo ${e.odoo_version} · ${e.branch} · ${e.kind}`)),
    actions, table);
}

// --- The deployment page: the spec's DeploymentProgress ---------------------
const TERMINAL = ["success", "failed", "cancelled"];
const ICONS = { completed: "✓", running: "⟳", failed: "✗", pending: "○", warning: "⚠", skipped: "↷" };
const LABELS = { completed: "completed", running: "running", failed: "failed", pending: "pending", warning: "completed with a warning", skipped: "skipped" };

async function deployment(id) {
  const d = await api(`/deployments/${id}`);
  // Toasts say how a deployment ended that was watched while it ran.
  const live = !TERMINAL.includes(d.status);
  const e = await api(`/environments/${d.environment_id}`).catch(() => null);
  crumbs([["Organizations", "#/"], ...(e ? [[e.name, `#/env/${e.id}`]] : []), [`v${d.version}`]]);
  const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": "Deployment progress", id: "progress" }, h("div"));
  const percent = h("span", { id: "percent" });
  const total = h("span", { class: "muted", id: "total" });
  const status = h("span", { id: "status" });
  const error = h("div", { id: "error" });
  const module = h("p", { class: "muted", id: "module", "aria-live": "polite" });
  const conn = h("p", { class: "muted", id: "connection", "aria-live": "polite" });
  const steps = h("ol", { class: "steps", id: "steps" });
  const view = {}; // step id -> {li, head, icon, time, latest, logs, open, lines:Set, loaded, loading}
  let finished = false;
  let lastId = null;
  let lastSeq = -1;
  let es = null;
  let attempts = 0;
  let retry = null;
  let refreshing = null;

  function stepView(s) {
    const icon = h("span", { class: "step-icon", "aria-hidden": "true" });
    const latest = h("span", { class: "step-latest" });
    const name = h("span", { class: "step-name" }, s.name, latest);
    const time = h("span", { class: "step-time" });
    const logs = h("pre", { class: "logs", id: `logs-${s.id}`, hidden: true, tabindex: "0", "aria-label": `${s.name} logs` });
    const head = h("button", { class: "step-head", type: "button", "aria-expanded": "false", "aria-controls": `logs-${s.id}`, "data-step": s.id }, icon, name, time);
    const v = { li: h("li", { "data-step": s.id }, head, logs), head, icon, time, latest, logs, open: false, auto: true, lines: new Set(), loaded: false, loading: false };
    head.addEventListener("click", () => toggle(s.id, !v.open, true));
    return v;
  }

  function line(l) {
    return h("div", { class: `l-${l.level}`, "data-seq": String(l.seq) }, `${new Date(l.timestamp).toLocaleTimeString()}  ${l.message}`);
  }

  // A stage's earlier lines come from /logs once it is opened; lines that
  // arrive live are kept whether or not it was opened. A load cut short (the
  // api gone mid-request) is tried again on the next open or reconnection.
  async function loadLogs(step) {
    const v = view[step];
    if (v.loaded || v.loading) return;
    v.loading = true;
    try {
      for (let skip = 0; ; skip += 500) {
        const page = await api(`/deployments/${id}/logs?step=${step}&skip=${skip}&limit=500`);
        for (const l of page.logs) addLine(step, l);
        if (page.logs.length < 500) break;
      }
      v.loaded = true;
      v.logs.dataset.loaded = "true";
    } catch {
      // Left unloaded: retried by reloadOpen once the stream is back.
    } finally {
      v.loading = false;
    }
  }

  function reloadOpen() {
    for (const [step, v] of Object.entries(view)) if (v.open && !v.loaded) loadLogs(step);
  }

  // Each line once, in log order, whether it came from /logs or live.
  function addLine(step, l) {
    const v = view[step];
    if (!v || v.lines.has(l.seq)) return;
    v.lines.add(l.seq);
    const el = line(l);
    const after = [...v.logs.children].find((c) => Number(c.dataset.seq) > l.seq);
    v.logs.insertBefore(el, after || null);
    if (v.open) v.logs.scrollTop = v.logs.scrollHeight;
  }

  async function toggle(step, open, byUser) {
    const v = view[step];
    if (byUser) v.auto = false;
    v.open = open;
    v.head.setAttribute("aria-expanded", String(open));
    v.logs.hidden = !open;
    if (open) await loadLogs(step);
  }

  function paint(p) {
    bar.setAttribute("aria-valuenow", String(p.progress_percent));
    bar.firstChild.style.width = `${p.progress_percent}%`;
    bar.classList.toggle("done", p.status === "success");
    bar.classList.toggle("failed", p.status === "failed");
    percent.textContent = `${p.progress_percent}%`;
    status.replaceChildren(badge(p.status));
    total.textContent = p.duration_seconds !== null ? `Total ${secs(p.duration_seconds)}` : "";
    error.replaceChildren(p.error_message ? h("div", { class: "banner bad", role: "alert" }, p.error_message) : "");
    for (const s of p.steps) {
      if (!view[s.id]) {
        view[s.id] = stepView(s);
        steps.append(view[s.id].li);
      }
      const v = view[s.id];
      v.icon.replaceChildren(s.status === "running" ? h("span", { class: "spin" }, ICONS.running) : ICONS[s.status] || "○");
      v.icon.className = `step-icon s-${s.status}`;
      v.head.setAttribute("aria-label", `${s.name}: ${LABELS[s.status] || s.status}${s.duration_seconds !== null ? `, ${secs(s.duration_seconds)}` : ""}`);
      v.li.dataset.status = s.status;
      v.time.textContent = secs(s.duration_seconds);
      v.latest.textContent = s.latest_message || "";
      // Expanded while running, collapsed when done (unless the user chose).
      if (v.auto) {
        const want = s.status === "running" || (s.status === "failed");
        if (want !== v.open) toggle(s.id, want, false);
      }
    }
  }

  async function reload() {
    if (refreshing) return refreshing;
    refreshing = api(`/deployments/${id}/progress`).then(paint).finally(() => { refreshing = null; });
    return refreshing;
  }

  function url() {
    const q = new URLSearchParams({ token: session.access });
    if (lastId) q.set("last_event_id", lastId);
    return `${API}/deployments/${id}/events?${q}`;
  }

  function onProgress(ev) {
    const seq = Number(ev.lastEventId);
    if (Number.isFinite(seq) && ev.lastEventId !== "") {
      if (seq <= lastSeq) return;
      lastSeq = seq;
      lastId = ev.lastEventId;
    }
    const data = JSON.parse(ev.data).data;
    if (data.step && view[data.step]) {
      addLine(data.step, { ...data, seq: data.seq });
      view[data.step].latest.textContent = data.message;
      if (view[data.step].li.dataset.status !== "running" && !finished) reload();
    }
    if (data.data && data.data.module) {
      module.textContent = `Module ${data.data.module} (${data.data.module_index}/${data.data.module_count})`;
    }
    bar.setAttribute("aria-valuenow", String(data.progress_percent));
    bar.firstChild.style.width = `${data.progress_percent}%`;
    percent.textContent = `${data.progress_percent}%`;
  }

  async function onFinished(ev) {
    finished = true;
    es?.close();
    const data = JSON.parse(ev.data).data;
    await reload();
    module.textContent = "";
    conn.textContent = "";
    if (!live) return;
    if (data.status === "success") toast(`Deployment v${d.version} succeeded in ${secs(data.duration_seconds)}.`, "ok");
    else toast(`Deployment v${d.version} ${data.status}${data.error_message ? `: ${data.error_message}` : "."}`, "bad");
  }

  // The spec's reconnection: 1 s doubling up to 512 s, 10 attempts, the
  // count reset once a connection opens; resumed after the last event.
  async function connect() {
    if (finished) return;
    es = new EventSource(url());
    es.addEventListener("open", () => {
      attempts = 0;
      conn.textContent = "";
      reloadOpen();
    });
    es.addEventListener("deployment_progress", onProgress);
    es.addEventListener("deployment_finished", onFinished);
    es.addEventListener("error", async () => {
      es.close();
      if (finished) return;
      // A finished deployment's stream ends after its story.
      const now = await api(`/deployments/${id}`).catch(() => null);
      if (now && TERMINAL.includes(now.status)) {
        finished = true;
        conn.textContent = "";
        await reload();
        return;
      }
      // The token may have expired (the stream ends then): refresh first.
      await refresh().catch(() => false);
      attempts += 1;
      if (attempts > 10) {
        conn.textContent = "Live updates stopped after 10 attempts; reload the page to try again.";
        return;
      }
      const delay = Math.min(1000 * 2 ** (attempts - 1), 512000);
      conn.textContent = `Connection lost; reconnecting in ${delay / 1000}s (attempt ${attempts} of 10).`;
      retry = setTimeout(connect, delay);
    });
  }

  show(`Deployment v${d.version}`,
    h("div", { class: "summary" }, h("span", {}, status, " ", percent), total),
    bar, error, module, conn, steps);
  await reload();
  connect();
  leave = () => {
    finished = true;
    es?.close();
    clearTimeout(retry);
  };
}

// --- Router -----------------------------------------------------------------
async function route() {
  leave?.();
  leave = null;
  if (!session.access) return signIn();
  const [, page, id] = location.hash.replace(/^#\/?/, "").match(/^([a-z]*)\/?(.*)$/) || [];
  try {
    if (page === "org") await organization(id);
    else if (page === "project") await project(id);
    else if (page === "env") await environment(id);
    else if (page === "deployment") await deployment(id);
    else await organizations();
  } catch (e) {
    if (e.status === 401) return;
    show("Something went wrong", h("p", { class: "banner bad", role: "alert" }, e.message));
  }
}

document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
