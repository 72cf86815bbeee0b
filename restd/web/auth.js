// Sign in and sign up.

import { api } from "./api.js";
import { errorText, field, h } from "./dom.js";

function authForm({ title, intro, fields, submitText, testid, onSubmit, footer }) {
  const error = h("p", { class: "form-error", role: "alert", testid: "form-error" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", testid: `${testid}-submit`, text: submitText });
  const form = h("form", { class: "card", testid: `${testid}-form`, novalidate: true }, fields, error, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!form.checkValidity()) {
      const bad = form.querySelector(":invalid");
      error.textContent = bad ? `${bad.labels[0].textContent}: ${bad.validationMessage}` : "Check the form.";
      if (bad) bad.focus();
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit();
    } catch (err) {
      error.textContent = errorText(err);
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "narrow stack", "aria-labelledby": `${testid}-title` }, h("h1", { id: `${testid}-title`, text: title }), h("p", { class: "muted", text: intro }), form, footer);
}

export function renderLogin(app, root, _params, query) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, testid: "login-email" });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, testid: "login-password" });
  const next = query.get("next") || "";
  root.append(
    authForm({
      title: "Sign in",
      intro: "Welcome back to DevConnect.",
      testid: "login",
      submitText: "Sign in",
      fields: [field("Email", email), field("Password", password)],
      onSubmit: async () => {
        const result = await api.post("/api/auth/login", { email: email.value, password: password.value });
        await app.signedIn(result.user, next);
      },
      footer: h("p", {}, "New here? ", h("a", { href: next ? `/signup?next=${encodeURIComponent(next)}` : "/signup", testid: "to-signup", text: "Create an account" })),
    }),
  );
  email.focus();
}

export function renderSignup(app, root, _params, query) {
  const name = h("input", { type: "text", name: "name", autocomplete: "name", required: true, maxlength: "100", testid: "signup-name" });
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true, testid: "signup-email" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true, minlength: "8", maxlength: "128", testid: "signup-password" });
  const next = query.get("next") || "";
  root.append(
    authForm({
      title: "Create your account",
      intro: "Meet developers who share your skills, and talk to them.",
      testid: "signup",
      submitText: "Sign up",
      fields: [field("Name", name), field("Email", email), field("Password", password, "At least 8 characters.")],
      onSubmit: async () => {
        const result = await api.post("/api/auth/signup", { name: name.value, email: email.value, password: password.value });
        await app.signedIn(result.user, next || "/profile?welcome=1");
      },
      footer: h("p", {}, "Already have an account? ", h("a", { href: "/login", testid: "to-login", text: "Sign in" })),
    }),
  );
  name.focus();
}
