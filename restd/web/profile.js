// My profile (edit) and someone else's (view, connect, message, block).

import { api } from "./api.js";
import { avatar, chips, errorText, field, h, proBadge, replace, safeUrl, toast } from "./dom.js";
import { connectControl } from "./people.js";

function profileView(user, { actions } = {}) {
  const links = (user.links || []).map((l) => {
    const url = safeUrl(l);
    return h("li", {}, url ? h("a", { href: url, rel: "noopener noreferrer nofollow", target: "_blank", text: l }) : l);
  });
  return h(
    "article",
    { class: "card stack", testid: "profile-card", "aria-labelledby": "profile-name" },
    h(
      "div",
      { class: "person" },
      avatar(user, { large: true }),
      h(
        "div",
        { class: "person-body" },
        h("div", { class: "row" }, h("h2", { id: "profile-name", testid: "profile-name", text: user.name }), proBadge(user)),
        user.headline ? h("p", { class: "headline", testid: "profile-headline", text: user.headline }) : null,
        user.location ? h("p", { class: "headline", testid: "profile-location", text: user.location }) : null,
      ),
    ),
    chips(user.skills, "profile-skills"),
    user.bio ? h("p", { class: "bio", testid: "profile-bio", text: user.bio }) : null,
    links.length ? h("ul", { class: "links-list", "aria-label": "Links", testid: "profile-links" }, links) : null,
    actions,
  );
}

export async function renderProfile(app, root, _params, query) {
  root.append(h("h1", { text: "Your profile" }));
  if (query.get("welcome")) root.append(h("p", { class: "form-ok", role: "status", text: "Welcome! Add your skills and location so people can find you." }));
  let me;
  try {
    me = await app.reloadMe();
  } catch (err) {
    root.append(h("p", { class: "form-error", text: errorText(err) }));
    return;
  }
  const preview = h("div", { testid: "profile-preview" }, profileView(me));
  const name = h("input", { type: "text", name: "name", required: true, maxlength: "100", value: me.name, testid: "profile-name-input" });
  const headline = h("input", { type: "text", name: "headline", maxlength: "200", value: me.headline || "", testid: "profile-headline-input" });
  const location = h("input", { type: "text", name: "location", maxlength: "100", value: me.location || "", autocomplete: "address-level2", testid: "profile-location-input" });
  const skills = h("input", { type: "text", name: "skills", value: (me.skills || []).join(", "), testid: "profile-skills-input" });
  const bio = h("textarea", { name: "bio", maxlength: "2000", rows: "5", testid: "profile-bio-input" });
  bio.value = me.bio || "";
  const links = h("textarea", { name: "links", rows: "3", testid: "profile-links-input" });
  links.value = (me.links || []).join("\n");
  const avatarUrl = h("input", { type: "url", name: "avatarUrl", value: me.avatarUrl || "", testid: "profile-avatar-input" });
  const status = h("p", { role: "status", testid: "profile-status" });
  const save = h("button", { type: "submit", class: "btn btn-primary", testid: "profile-save", text: "Save profile" });
  const form = h(
    "form",
    { class: "card", testid: "profile-form", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title", text: "Edit" }),
    field("Name", name),
    field("Headline", headline, "One line about what you do, e.g. “Backend engineer, Go and Postgres”."),
    field("Location", location, "City or region."),
    field("Skills", skills, "Comma-separated, e.g. python, react, kubernetes."),
    field("Bio", bio),
    field("Links", links, "One http(s) URL per line: GitHub, blog, portfolio."),
    field("Avatar URL", avatarUrl, "An https image URL (optional)."),
    status,
    h("div", { class: "actions" }, save),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.className = "";
    status.textContent = "Saving…";
    save.disabled = true;
    const patch = {
      name: name.value.trim(),
      headline: headline.value.trim() || null,
      location: location.value.trim() || null,
      bio: bio.value.trim() || null,
      skills: skills.value.split(",").map((s) => s.trim()).filter(Boolean),
      links: links.value.split(/\s+/).map((s) => s.trim()).filter(Boolean),
      avatarUrl: avatarUrl.value.trim() || null,
    };
    try {
      const updated = await api.patch("/api/users/me", patch);
      app.setMe(updated);
      replace(preview, profileView(updated));
      skills.value = (updated.skills || []).join(", ");
      status.className = "form-ok";
      status.textContent = "Saved.";
      toast("Profile saved.");
    } catch (err) {
      status.className = "form-error";
      status.textContent = errorText(err);
    } finally {
      save.disabled = false;
    }
  });
  root.append(h("div", { class: "grid-2" }, h("section", { "aria-label": "How others see you" }, preview), form));
}

export async function renderUser(app, root, params) {
  const id = params[0];
  if (id === app.me.id) {
    app.go("/profile", { replace: true });
    return;
  }
  const heading = h("h1", { text: "Profile" });
  root.append(heading);
  let user;
  try {
    user = await api.get(`/api/users/${id}`);
  } catch (err) {
    root.append(h("p", { class: "form-error", role: "alert", text: errorText(err) }));
    return;
  }
  heading.textContent = user.name;
  heading.classList.add("visually-hidden");
  const connections = await api.get("/api/connections").catch(() => ({ items: [] }));
  const connected = connections.items.some((c) => c.user.id === id);
  const block = h("button", {
    type: "button",
    class: "btn btn-small btn-danger",
    testid: "block",
    text: "Block",
    onclick: async () => {
      if (!window.confirm(`Block ${user.name}?`)) return;
      try {
        await api.post(`/api/users/${id}/block`);
        toast(`${user.name} blocked.`);
        app.go("/connections");
      } catch (err) {
        toast(errorText(err), { error: true });
      }
    },
  });
  const actions = h(
    "div",
    { class: "actions" },
    connected ? h("a", { class: "btn btn-primary btn-small", href: `/chat/${id}`, testid: "message", text: `Message ${user.name}` }) : connectControl(user),
    block,
  );
  root.append(profileView(user, { actions }));
}
