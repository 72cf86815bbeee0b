// People you may know (ranked, with reasons and the score's breakdown), and search.

import { api } from "./api.js";
import { errorText, field, h, replace } from "./dom.js";
import { connectControl, personSummary } from "./people.js";

const FEATURE_NAMES = {
  mutual: "Mutual connections",
  adamic_adar: "Shared rare connections",
  resource_allocation: "Network overlap",
  walk: "Network proximity",
  three_hop: "Friends of friends of friends",
  popularity: "Popularity",
  skills: "Skills in common",
  skills_rare: "Rare skills in common",
  location: "Location",
  interactions: "Past interactions",
  recency: "Recently active",
};

const fmt = (x) => (Math.round(x * 1000) / 1000).toFixed(3);

function breakdown(item) {
  const contributions = Object.entries(item.explain.contributions || {}).sort((a, b) => b[1] - a[1]);
  const values = item.explain.values || {};
  // Signals that added nothing are listed last, dimmed: the score is the sum of the rest.
  const rows = contributions.map(([name, c]) =>
    h("tr", { class: c === 0 ? "zero" : null }, h("th", { scope: "row", text: FEATURE_NAMES[name] || name }), h("td", { class: "num", text: name in values ? fmt(values[name]) : "–" }), h("td", { class: "num", text: fmt(c) })),
  );
  return h(
    "details",
    { class: "why", testid: "score-breakdown" },
    h("summary", { text: "How this score adds up" }),
    h(
      "table",
      { class: "breakdown" },
      h("caption", { class: "visually-hidden", text: `Score breakdown for ${item.profile.name}` }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Signal" }), h("th", { scope: "col", class: "num", text: "Value" }), h("th", { scope: "col", class: "num", text: "Points" }))),
      h("tbody", {}, rows),
      h("tfoot", {}, h("tr", {}, h("th", { scope: "row", text: "Score" }), h("td", {}), h("td", { class: "num", text: fmt(item.score) }))),
    ),
  );
}

function feedCard(item) {
  const p = item.profile;
  const reasons = item.explain.reasons || [];
  const viewed = () => api.post("/api/feed/events", { type: "profile_view", userId: p.id }).catch(() => {});
  const card = h(
    "li",
    { class: "card", testid: "feed-item", dataset: { userId: p.id } },
    h(
      "div",
      { class: "spread" },
      personSummary(p),
      h("span", { class: "score", testid: "score", title: "Match score", text: `Score ${fmt(item.score)}` }),
    ),
    reasons.length ? h("ul", { class: "reasons", "aria-label": "Why you may know them", testid: "reasons" }, reasons.map((r) => h("li", { text: r }))) : null,
    breakdown(item),
    h("div", { class: "actions" }, connectControl(p, { fromFeed: true })),
  );
  const link = card.querySelector("a.person-name");
  if (link) link.addEventListener("click", viewed);
  return card;
}

function searchSection() {
  const q = h("input", { type: "search", name: "q", testid: "search-q", placeholder: "Name, headline, anything" });
  const skill = h("input", { type: "text", name: "skill", testid: "search-skill" });
  const location = h("input", { type: "text", name: "location", testid: "search-location" });
  const results = h("ul", { class: "list", testid: "search-results", "aria-live": "polite" });
  const status = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", class: "btn", hidden: true, text: "More results" });
  let cursor = null;
  async function run(append) {
    status.textContent = "Searching…";
    try {
      const page = await api.get("/api/users/search", { q: q.value.trim(), skill: skill.value.trim(), location: location.value.trim(), cursor: append ? cursor : null, limit: 20 });
      if (!append) replace(results);
      for (const u of page.items) results.append(h("li", { class: "card", testid: "search-result", dataset: { userId: u.id } }, personSummary(u), h("div", { class: "actions" }, connectControl(u))));
      cursor = page.nextCursor;
      more.hidden = !cursor;
      status.textContent = results.children.length ? `${results.children.length} found` : "Nobody matches that yet.";
    } catch (err) {
      status.textContent = errorText(err);
    }
  }
  more.addEventListener("click", () => run(true));
  const form = h(
    "form",
    { class: "search-form", role: "search", "aria-label": "Find developers", testid: "search-form" },
    field("Search people", q),
    field("Skill", skill),
    field("Location", location),
    h("button", { type: "submit", class: "btn btn-primary", testid: "search-submit", text: "Search" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(false);
  });
  return h("section", { class: "card stack", "aria-labelledby": "search-title" }, h("h2", { id: "search-title", text: "Find developers" }), form, status, results, more);
}

export async function renderFeed(app, root) {
  const list = h("ul", { class: "list", testid: "feed-list" });
  const status = h("p", { class: "muted", role: "status", testid: "feed-status", text: "Loading suggestions…" });
  const more = h("button", { type: "button", class: "btn", testid: "feed-more", hidden: true, text: "Show more" });
  root.append(
    h("h1", { text: "People you may know" }),
    searchSection(),
    h("section", { "aria-labelledby": "suggestions-title", class: "stack" }, h("h2", { id: "suggestions-title", text: "Suggestions" }), status, list, more),
  );
  let cursor = null;
  async function load(append) {
    more.disabled = true;
    try {
      const page = await api.get("/api/feed", { cursor: append ? cursor : null, limit: 10 });
      if (!append) replace(list);
      const firstNew = list.children.length;
      for (const item of page.items) list.append(feedCard(item));
      cursor = page.nextCursor;
      more.hidden = !cursor;
      status.textContent = list.children.length ? `${list.children.length} suggestion${list.children.length === 1 ? "" : "s"}` : "No suggestions yet: add skills and a location to your profile, or search below.";
      if (append && list.children[firstNew]) list.children[firstNew].querySelector("a").focus();
    } catch (err) {
      if (err.status === 409 && append) return load(false); // the snapshot moved on: start over
      status.textContent = errorText(err);
    } finally {
      more.disabled = false;
    }
    return undefined;
  }
  more.addEventListener("click", () => load(true));
  await load(false);
}
