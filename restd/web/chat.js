// Chat: the conversation list (unread counts, presence) and one thread
// (history paged backwards over REST, live messages with their state, typing).

import { api } from "./api.js";
import { conversationId } from "./chatstore.js";
import { avatar, clock, errorText, h, replace, timeAgo } from "./dom.js";

const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 4000;
const STATE_TEXT = { queued: "Queued: waiting for connection", sending: "Sending…", sent: "Sent", read: "Read", received: "" };

function presenceText(p) {
  if (!p) return "Offline";
  if (p.status === "online") return "Online";
  return p.lastSeen ? `Last seen ${timeAgo(p.lastSeen)}` : "Offline";
}

export async function renderChat(app, root, params) {
  const store = app.store;
  if (!store) {
    root.append(h("h1", { text: "Chat" }), h("p", { class: "form-error", text: "Chat is unavailable right now." }));
    return undefined;
  }
  const me = app.me.id;
  const otherId = params[0] || null;
  const cleanups = [];
  const on = (target, type, fn) => {
    target.addEventListener(type, fn);
    cleanups.push(() => target.removeEventListener(type, fn));
  };

  // -- the conversation list ------------------------------------------------------
  const convList = h("ul", { testid: "conversation-list" });
  const convEmpty = h("p", { class: "empty", hidden: true }, "No conversations yet. Start one from ", h("a", { href: "/connections", text: "your connections" }), ".");
  const listPane = h("nav", { class: "chat-list card", "aria-label": "Conversations" }, h("h2", { text: "Conversations" }), convList, convEmpty);

  function drawConversations() {
    replace(convList);
    const ids = store.convOrder;
    convEmpty.hidden = ids.length > 0;
    for (const cid of ids) {
      const c = store.conversations.get(cid);
      if (!c) continue;
      const p = store.presence.get(c.user.id);
      const last = c.lastMessage;
      const lastText = last ? `${last.fromUserId === me ? "You: " : ""}${last.text}` : "";
      const unread = c.unreadCount
        ? [h("span", { class: "count", testid: "unread-count", text: String(c.unreadCount) }), h("span", { class: "visually-hidden", text: " unread" })]
        : null;
      convList.append(
        h(
          "li",
          {},
          h(
            "a",
            { href: `/chat/${c.user.id}`, testid: "conversation", dataset: { userId: c.user.id }, "aria-current": c.user.id === otherId ? "page" : null },
            avatar(c.user, { presence: p ? p.status : "offline" }),
            h("span", { class: "conv-body" }, h("span", { class: "person-name", text: c.user.name }), h("span", { class: "conv-last", text: lastText })),
            unread,
          ),
        ),
      );
    }
  }
  on(store, "conversations", drawConversations);
  on(store, "presence", drawConversations);

  const layout = h("div", { class: otherId ? "chat has-thread" : "chat" }, listPane);
  root.append(h("h1", { class: otherId ? "visually-hidden" : "", text: "Chat" }), layout);
  store.loadConversations().catch(() => {});
  drawConversations();

  if (!otherId) {
    layout.append(h("section", { class: "thread card", "aria-label": "No conversation open" }, h("p", { class: "empty", text: "Pick a conversation." })));
    return () => cleanups.forEach((fn) => fn());
  }

  // -- one thread -------------------------------------------------------------------
  const cid = conversationId(me, otherId);
  const known = store.conversations.get(cid);
  let other = known ? known.user : { id: otherId, name: "…" };
  const title = h("h2", { id: "thread-title", testid: "thread-title", text: other.name });
  const presenceEl = h("span", { class: "presence", testid: "presence", text: "" });
  const headAvatar = h("span", {}, avatar(other));
  const older = h("button", { type: "button", class: "btn btn-small", testid: "load-older", hidden: true, text: "Load older messages" });
  const list = h("ol", { class: "messages", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-labelledby": "thread-title", testid: "messages" });
  const wrap = h("div", { class: "messages-wrap", testid: "messages-wrap" }, h("div", { class: "row" }, older), list);
  const typingEl = h("div", { class: "typing", "aria-live": "polite", testid: "typing" });
  const input = h("textarea", { id: "composer", rows: "1", maxlength: "4000", testid: "composer", placeholder: "Write a message", autocomplete: "off" });
  const sendBtn = h("button", { type: "submit", class: "btn btn-primary", testid: "send", text: "Send" });
  const composer = h("form", { class: "composer", testid: "composer-form" }, h("div", { class: "field" }, h("label", { for: "composer", class: "visually-hidden", id: "composer-label", text: `Message to ${other.name}` }), input), sendBtn);
  const thread = h(
    "section",
    { class: "thread card", "aria-labelledby": "thread-title", testid: "thread", dataset: { conversationId: cid } },
    h("div", { class: "thread-head" }, h("a", { href: "/chat", class: "back-link", text: "← All" }), headAvatar, h("div", {}, title, presenceEl)),
    wrap,
    typingEl,
    composer,
  );
  layout.append(thread);

  function setOther(user) {
    other = user;
    title.textContent = user.name;
    replace(headAvatar, avatar(user));
    document.getElementById("composer-label").textContent = `Message to ${user.name}`;
    document.title = `${user.name} · Chat · DevConnect`;
  }
  if (!known) {
    api.get(`/api/users/${otherId}`).then(setOther).catch(() => setOther({ id: otherId, name: "Unknown user" }));
  } else {
    document.title = `${other.name} · Chat · DevConnect`;
  }

  function drawPresence() {
    presenceEl.textContent = presenceText(store.presence.get(otherId));
    presenceEl.dataset.status = (store.presence.get(otherId) || {}).status || "offline";
  }
  drawPresence();
  on(store, "presence", drawPresence);
  const presenceTick = setInterval(drawPresence, 30000);
  cleanups.push(() => clearInterval(presenceTick));

  function drawTyping() {
    typingEl.textContent = store.isTyping(otherId) ? `${other.name} is typing…` : "";
  }
  on(store, "typing", (e) => {
    if (e.detail === otherId) drawTyping();
  });

  // Keyed rendering: an element per message, updated in place, so the live
  // region announces only new messages.
  const nodes = new Map();
  function makeNode(m) {
    const mine = m.fromUserId === me;
    const meta = h("span", { class: "meta", testid: "message-meta" });
    const el = h("li", { class: mine ? "msg mine" : "msg theirs", testid: "message" }, h("span", { class: "visually-hidden", text: mine ? "You: " : `${other.name}: ` }), h("span", { class: "bubble", testid: "message-text", text: m.text }), meta);
    el._meta = meta;
    return el;
  }
  function updateNode(el, t, m) {
    const state = store.stateOf(t, m);
    if (el.dataset.state === state && el.dataset.id === (m.id || "")) return;
    el.dataset.state = state;
    el.dataset.id = m.id || "";
    if (m.tempId) el.dataset.tempId = m.tempId;
    const parts = [clock(m.createdAt)];
    if (STATE_TEXT[state]) parts.push(STATE_TEXT[state]);
    replace(el._meta, parts.join(" · "));
    if (state === "failed") {
      el._meta.append(` · Not sent: ${m.failed} `, h("button", { type: "button", class: "linkish", testid: "retry", text: "Retry", onclick: () => store.retry(cid, m) }));
    }
  }
  function drawMessages() {
    const t = store.thread(cid);
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 60;
    let prev = null;
    let addedMine = false;
    const keys = new Set();
    for (const m of t.items) {
      keys.add(m.key);
      let el = nodes.get(m.key);
      if (!el) {
        el = makeNode(m);
        nodes.set(m.key, el);
        if (m.fromUserId === me) addedMine = true;
      }
      updateNode(el, t, m);
      const want = prev ? prev.nextSibling : list.firstChild;
      if (want !== el) list.insertBefore(el, want);
      prev = el;
    }
    for (const [key, el] of nodes) {
      if (!keys.has(key)) {
        el.remove();
        nodes.delete(key);
      }
    }
    older.hidden = !t.hasOlder;
    if (atBottom || addedMine) wrap.scrollTop = wrap.scrollHeight;
  }
  on(store, "thread", (e) => {
    if (e.detail === null || e.detail === cid) drawMessages();
  });

  older.addEventListener("click", async () => {
    older.disabled = true;
    const before = wrap.scrollHeight;
    try {
      await store.loadOlder(cid);
      wrap.scrollTop += wrap.scrollHeight - before;
    } finally {
      older.disabled = false;
    }
  });

  // -- composing --------------------------------------------------------------------
  let typingSentAt = 0;
  let idleTimer = null;
  const stopTyping = () => {
    clearTimeout(idleTimer);
    if (typingSentAt) app.socket.sendTyping(otherId, "stop");
    typingSentAt = 0;
  };
  input.addEventListener("input", () => {
    if (!input.value.trim()) {
      stopTyping();
      return;
    }
    if (Date.now() - typingSentAt > TYPING_REPEAT_MS) {
      app.socket.sendTyping(otherId, "start");
      typingSentAt = Date.now();
    }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  input.addEventListener("blur", stopTyping);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    stopTyping();
    store.send(otherId, text);
    input.value = "";
    input.focus();
  });
  cleanups.push(stopTyping);

  // -- reading ----------------------------------------------------------------------
  store.setActive(cid);
  cleanups.push(() => store.setActive(null));
  on(document, "visibilitychange", () => store.markActiveRead());

  drawMessages();
  drawTyping();
  try {
    await store.loadNewest(cid);
  } catch (err) {
    if (err.status !== 404) list.before(h("p", { class: "form-error", role: "alert", text: errorText(err) }));
  }
  wrap.scrollTop = wrap.scrollHeight;
  store.markActiveRead();
  input.focus();
  return () => cleanups.forEach((fn) => fn());
}
