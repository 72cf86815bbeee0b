// Incoming and sent requests (accept, reject, withdraw) and connections
// (message, remove, block). New requests arrive live through the chat socket.

import { api } from "./api.js";
import { errorText, h, replace, timeAgo, toast } from "./dom.js";
import { personSummary } from "./people.js";

function button(text, testid, onclick, cls = "btn btn-small", label) {
  return h("button", { type: "button", class: cls, testid, text, "aria-label": label, onclick });
}

// Runs an action from a button, disabling it meanwhile and reporting failure.
async function act(btn, fn) {
  btn.disabled = true;
  try {
    await fn();
  } catch (err) {
    toast(errorText(err), { error: true });
    btn.disabled = false;
  }
}

export async function renderConnections(app, root) {
  const incoming = h("ul", { class: "list", testid: "incoming-list", "aria-live": "polite" });
  const outgoing = h("ul", { class: "list", testid: "outgoing-list" });
  const connections = h("ul", { class: "list", testid: "connections-list" });
  const section = (id, title, list) => h("section", { class: "stack", "aria-labelledby": id }, h("h2", { id, text: title }), list);
  root.append(
    h("h1", { text: "Connections" }),
    section("incoming-title", "Requests to you", incoming),
    section("outgoing-title", "Requests you sent", outgoing),
    section("connections-title", "Your connections", connections),
  );

  async function loadIncoming() {
    const page = await api.get("/api/connection-requests", { direction: "incoming", status: "pending" });
    replace(incoming);
    if (!page.items.length) incoming.append(h("li", { class: "empty", text: "No requests waiting." }));
    for (const r of page.items) {
      const who = r.fromUser || { id: r.fromUserId, name: "Someone" };
      const li = h("li", { class: "card", testid: "incoming-request", dataset: { requestId: r.id, userId: who.id } });
      const answer = (status) => async (event) =>
        act(event.currentTarget, async () => {
          await api.patch(`/api/connection-requests/${r.id}`, { status });
          toast(status === "accepted" ? `You are now connected with ${who.name}.` : `Request from ${who.name} declined.`);
          await Promise.all([loadIncoming(), loadConnections()]);
          app.countIncoming().catch(() => {});
        });
      li.append(
        personSummary(who, { extra: [r.message ? h("p", { class: "bio", testid: "request-note", text: `“${r.message}”` }) : null, h("p", { class: "muted small", text: `Asked ${timeAgo(Date.parse(r.createdAt))}` })] }),
        h("div", { class: "actions" }, button("Accept", "accept", answer("accepted"), "btn btn-primary btn-small", `Accept ${who.name}`), button("Reject", "reject", answer("rejected"), "btn btn-small", `Reject ${who.name}`)),
      );
      incoming.append(li);
    }
  }

  async function loadOutgoing() {
    const page = await api.get("/api/connection-requests", { direction: "outgoing", status: "pending" });
    replace(outgoing);
    if (!page.items.length) outgoing.append(h("li", { class: "empty", text: "No requests pending." }));
    for (const r of page.items) {
      const who = r.toUser || { id: r.toUserId, name: "Someone" };
      const withdraw = (event) =>
        act(event.currentTarget, async () => {
          await api.del(`/api/connection-requests/${r.id}`);
          toast(`Request to ${who.name} withdrawn.`);
          await loadOutgoing();
        });
      outgoing.append(
        h("li", { class: "card", testid: "outgoing-request", dataset: { requestId: r.id, userId: who.id } }, personSummary(who, { extra: h("p", { class: "muted small", text: `Sent ${timeAgo(Date.parse(r.createdAt))}` }) }), h("div", { class: "actions" }, button("Withdraw", "withdraw", withdraw, "btn btn-small", `Withdraw request to ${who.name}`))),
      );
    }
  }

  async function loadConnections() {
    const page = await api.get("/api/connections");
    replace(connections);
    if (!page.items.length) connections.append(h("li", { class: "empty" }, "No connections yet. ", h("a", { href: "/feed", text: "Find people" })));
    for (const c of page.items) {
      const who = c.user;
      const presence = app.store && app.store.presence.get(who.id);
      const remove = (event) => {
        if (!window.confirm(`Remove ${who.name} from your connections?`)) return;
        act(event.currentTarget, async () => {
          await api.del(`/api/connections/${who.id}`);
          toast(`${who.name} removed.`);
          await loadConnections();
        });
      };
      const block = (event) => {
        if (!window.confirm(`Block ${who.name}? You will no longer see each other.`)) return;
        act(event.currentTarget, async () => {
          await api.post(`/api/users/${who.id}/block`);
          toast(`${who.name} blocked.`);
          await loadConnections();
        });
      };
      connections.append(
        h(
          "li",
          { class: "card", testid: "connection", dataset: { userId: who.id } },
          personSummary(who, { presence: presence && presence.status, extra: h("p", { class: "muted small", text: `Connected ${timeAgo(Date.parse(c.connectedAt))}` }) }),
          h(
            "div",
            { class: "actions" },
            h("a", { class: "btn btn-primary btn-small", href: `/chat/${who.id}`, testid: "message", "aria-label": `Message ${who.name}`, text: "Message" }),
            button("Remove", "remove", remove, "btn btn-small", `Remove ${who.name}`),
            button("Block", "block", block, "btn btn-small btn-danger", `Block ${who.name}`),
          ),
        ),
      );
    }
  }

  const reloadAll = () => Promise.all([loadIncoming(), loadOutgoing(), loadConnections()]).catch((err) => toast(errorText(err), { error: true }));
  await reloadAll();
  const socket = app.socket;
  const onRequest = () => loadIncoming().catch(() => {});
  const onAccepted = () => Promise.all([loadOutgoing(), loadConnections()]).catch(() => {});
  if (socket) {
    socket.addEventListener("connection-request", onRequest);
    socket.addEventListener("connection-accepted", onAccepted);
    socket.addEventListener("resynced", reloadAll);
  }
  return () => {
    if (socket) {
      socket.removeEventListener("connection-request", onRequest);
      socket.removeEventListener("connection-accepted", onAccepted);
      socket.removeEventListener("resynced", reloadAll);
    }
  };
}
