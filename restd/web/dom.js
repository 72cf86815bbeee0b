// DOM helpers. Every string reaches the page through textContent or an
// attribute, never through innerHTML: user text is never parsed as HTML.

const PROPS = new Set(["value", "checked", "disabled", "selected", "indeterminate"]);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) el[key] = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

let fieldSeq = 0;

// A labelled form field: <div class=field><label for=id>..</label><input id=id ..></div>.
export function field(label, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const parts = [h("label", { for: id, text: label }), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId, text: hint }));
  }
  return h("div", { class: "field" }, parts);
}

export function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/).slice(0, 2);
  return parts.map((p) => p[0] || "").join("").toUpperCase() || "?";
}

export function avatar(user, { large = false, presence } = {}) {
  const el = h("span", { class: large ? "avatar avatar-lg" : "avatar", "aria-hidden": "true" });
  const url = safeUrl(user && user.avatarUrl, ["https:"]);
  if (url) el.append(h("img", { src: url, alt: "" }));
  else el.textContent = initials(user && user.name);
  if (presence) el.append(h("span", { class: `dot ${presence === "online" ? "online" : ""}` }));
  return el;
}

// Only http(s) URLs become links; anything else (javascript:, data:) is shown as text.
export function safeUrl(value, schemes = ["http:", "https:"]) {
  if (!value) return null;
  try {
    const url = new URL(String(value));
    return schemes.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

export function chips(items, testid) {
  if (!items || !items.length) return null;
  return h("ul", { class: "chips", "aria-label": "Skills", testid }, items.map((s) => h("li", { class: "chip", text: s })));
}

export function proBadge(user) {
  const badges = (user && user.badges) || [];
  return badges.includes("pro") ? h("span", { class: "badge badge-pro", testid: "pro-badge", text: "Pro" }) : null;
}

const toastRoot = () => document.getElementById("toasts");

// A short status line, announced by the polite live region that holds it.
export function toast(text, { error = false, ms = 4000 } = {}) {
  const root = toastRoot();
  if (!root) return;
  const el = h("div", { class: error ? "toast error" : "toast", testid: "toast", text });
  root.append(el);
  setTimeout(() => el.remove(), ms);
}

export function timeAgo(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 24) return `${hrs} h ago`;
  return new Date(ms).toLocaleDateString();
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function errorText(err) {
  if (!err) return "Something went wrong.";
  if (err.details && Array.isArray(err.details) && err.details.length) {
    return err.details.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).join("; ");
  }
  return err.message || "Something went wrong.";
}
