// hms-sync console: the few things the server-rendered pages need a script for.
// - buttons with data-method/data-url call the admin API (with the session's CSRF token);
// - forms with data-api-form send their fields to the API as JSON (or YAML) and show the answer;
// - elements with data-refresh reload their fragment every data-every ms (no full reload);
// - textareas with data-json are checked as JSON while typed; a form with invalid JSON does not send.
// Every value shown comes back as text (textContent) or as HTML the server escaped.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const flash = (text, bad) => {
    const el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "good";
    el.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { el.hidden = true; }, bad ? 15000 : 5000);
  };

  async function api(method, url, body, contentType) {
    const headers = { "X-CSRF-Token": csrf() };
    if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
    const res = await fetch(url, { method, headers, body, credentials: "same-origin" });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (res.status === 401) { location.href = "/ui/login"; }
    return { ok: res.ok, status: res.status, data };
  }

  // An API error as people read it: the message, then each validation error at its line and column.
  function describe(answer) {
    const d = answer.data;
    if (!d || typeof d !== "object") return "HTTP " + answer.status + (d ? ": " + d : "");
    let out = d.message || JSON.stringify(d, null, 2);
    if (Array.isArray(d.details)) {
      for (const e of d.details) {
        out += "\n  line " + e.line + ", column " + e.column + (e.path ? " (" + e.path + ")" : "") + ": " + e.message;
      }
    }
    return out;
  }

  function show(resultId, answer, okText) {
    const el = resultId && document.getElementById(resultId);
    const text = answer.ok ? (okText || JSON.stringify(answer.data, null, 2)) : describe(answer);
    if (el) {
      el.textContent = text;
      el.className = "result " + (answer.ok ? "good" : "bad");
      el.hidden = false;
    }
    flash(answer.ok ? "Done: HTTP " + answer.status : "Refused: " + describe(answer).split("\n")[0], !answer.ok);
  }

  function after(then, answer) {
    if (!answer.ok || !then) return;
    if (then === "reload") location.reload();
    else if (then === "reload-later") setTimeout(() => location.reload(), 1500);
    else if (then === "refresh") refreshAll();
    else if (then.startsWith("refresh:")) refresh(document.getElementById(then.slice(8)));
  }

  // Buttons that call the API.
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-url]");
    if (b) {
      ev.preventDefault();
      if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
      b.disabled = true;
      try {
        const answer = await api(b.dataset.method || "POST", b.dataset.url, b.dataset.body);
        show(b.dataset.result, answer);
        after(b.dataset.then, answer);
      } catch (e) {
        flash("The service cannot be reached: " + e, true);
      } finally {
        b.disabled = false;
      }
      return;
    }
    const p = ev.target.closest("button[data-page-to]");
    if (p) {
      const box = p.closest("[data-refresh]");
      box.dataset.page = p.dataset.pageTo;
      refresh(box);
      return;
    }
    if (ev.target.closest("button[data-logout]")) {
      await fetch("/ui/logout", { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
      location.href = "/ui/login";
    }
  });

  // JSON fields: checked while typed.
  function checkJson(area) {
    const state = document.querySelector('[data-json-state-for="' + area.id + '"]');
    try {
      JSON.parse(area.value);
      area.setAttribute("aria-invalid", "false");
      if (state) { state.textContent = "Valid JSON."; state.className = "hint good"; }
      return true;
    } catch (e) {
      area.setAttribute("aria-invalid", "true");
      if (state) { state.textContent = "Not valid JSON: " + e.message; state.className = "hint bad"; }
      return false;
    }
  }
  document.addEventListener("input", (ev) => {
    if (ev.target.matches("textarea[data-json]")) checkJson(ev.target);
    if (ev.target.matches("input[data-filter-for]")) {
      const box = document.getElementById(ev.target.dataset.filterFor);
      box.dataset.q = ev.target.value;
      box.dataset.page = "0";
      clearTimeout(box.filterTimer);
      box.filterTimer = setTimeout(() => refresh(box), 200);
    }
  });

  // Forms that call the API.
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form[data-api-form]");
    if (!form) return;
    ev.preventDefault();
    for (const area of form.querySelectorAll("textarea[data-json]")) {
      if (!checkJson(area)) { flash("Fix the JSON first.", true); area.focus(); return; }
    }
    const fields = new FormData(form);
    let url = form.dataset.url;
    let body, type;
    const area = form.querySelector("textarea[name=body]");
    if (form.dataset.apiForm === "dry-run") {
      const topic = fields.get("topic");
      if (topic) url += "?topic=" + encodeURIComponent(topic);
      body = area.value;
    } else if (form.dataset.wrap) {
      const obj = {};
      obj[form.dataset.wrap] = JSON.parse(area.value);
      if (fields.get("force")) obj.force = true;
      body = JSON.stringify(obj);
    } else if (area) {
      body = area.value;
      type = area.dataset.contentType;
    } else {
      const obj = {};
      for (const [k, v] of fields.entries()) {
        if (k === "force") obj.force = true;
        else if (v !== "") obj[k] = v;
      }
      body = JSON.stringify(obj);
    }
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const answer = await api(form.dataset.method || "POST", url, body, type);
      show(form.dataset.result, answer);
      after(form.dataset.then, answer);
    } catch (e) {
      flash("The service cannot be reached: " + e, true);
    } finally {
      if (button) button.disabled = false;
    }
  });

  // Live fragments.
  async function refresh(box) {
    if (!box) return;
    let url = box.dataset.refresh;
    const params = new URLSearchParams();
    if (box.dataset.q) params.set("q", box.dataset.q);
    if (box.dataset.page && box.dataset.page !== "0") params.set("page", box.dataset.page);
    if ([...params].length) url += "?" + params.toString();
    try {
      const res = await fetch(url, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" });
      if (res.status === 401) { location.href = "/ui/login"; return; }
      if (!res.ok) return;
      const html = await res.text();
      // Not while a control inside has the focus: the person is using it.
      if (box.contains(document.activeElement) && document.activeElement !== document.body) return;
      const doc = new DOMParser().parseFromString(html, "text/html");
      box.replaceChildren(...doc.body.childNodes);
    } catch (_) { /* the next round tries again */ }
  }
  function refreshAll() { document.querySelectorAll("[data-refresh]").forEach(refresh); }
  document.querySelectorAll("[data-refresh]").forEach((box) => {
    const every = parseInt(box.dataset.every || "0", 10);
    if (every > 0) setInterval(() => { if (!document.hidden) refresh(box); }, every);
  });
  document.querySelectorAll("textarea[data-json]").forEach(checkJson);
})();
