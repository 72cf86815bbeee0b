// Email preferences and sessions (log out here, log out everywhere).

import { api } from "./api.js";
import { errorText, h } from "./dom.js";

const PREFS = [
  ["emailMessages", "Messages", "A mail when someone writes to you while you are away."],
  ["emailConnections", "Connections", "A mail when someone asks to connect or accepts your request."],
  ["emailPayments", "Payments", "Receipts and membership changes."],
];

export async function renderSettings(app, root) {
  root.append(h("h1", { text: "Settings" }));
  const me = await app.reloadMe().catch(() => app.me);
  const prefs = me.prefs || {};
  const status = h("p", { role: "status", testid: "prefs-status" });
  const boxes = PREFS.map(([key, label, hint]) => {
    // A missing pref means on; only an explicit false (or 0) turns a kind off.
    const on = !(prefs[key] === false || prefs[key] === 0);
    const box = h("input", { type: "checkbox", id: `pref-${key}`, name: key, checked: on, testid: `pref-${key}`, "aria-describedby": `pref-${key}-hint` });
    return [key, box, h("div", { class: "check" }, box, h("div", {}, h("label", { for: `pref-${key}`, text: label }), h("div", { class: "hint", id: `pref-${key}-hint`, text: hint })))];
  });
  const save = h("button", { type: "submit", class: "btn btn-primary", testid: "prefs-save", text: "Save preferences" });
  const form = h("form", { class: "card", testid: "prefs-form" }, h("fieldset", {}, h("legend", { text: "Email me about" }), boxes.map((b) => b[2])), status, h("div", { class: "actions" }, save));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    status.className = "";
    status.textContent = "Saving…";
    try {
      const updated = await api.patch("/api/me", { prefs: Object.fromEntries(boxes.map(([key, box]) => [key, box.checked])) });
      app.setMe(updated);
      status.className = "form-ok";
      status.textContent = "Preferences saved.";
    } catch (err) {
      status.className = "form-error";
      status.textContent = errorText(err);
    } finally {
      save.disabled = false;
    }
  });
  const logout = h("button", { type: "button", class: "btn", testid: "logout-here", text: "Log out of this browser", onclick: () => app.logout() });
  const logoutAll = h("button", {
    type: "button",
    class: "btn btn-danger",
    testid: "logout-everywhere",
    text: "Log out everywhere",
    onclick: () => {
      if (window.confirm("Sign out on every browser and device, and close every chat?")) app.logout({ everywhere: true });
    },
  });
  root.append(
    h("section", { class: "stack", "aria-labelledby": "prefs-title" }, h("h2", { id: "prefs-title", text: "Email preferences" }), form),
    h(
      "section",
      { class: "stack", "aria-labelledby": "sessions-title" },
      h("h2", { id: "sessions-title", text: "Sessions" }),
      h("div", { class: "card" }, h("p", { class: "muted", text: `Signed in as ${me.email}.` }), h("div", { class: "actions" }, logout, logoutAll)),
    ),
  );
}
