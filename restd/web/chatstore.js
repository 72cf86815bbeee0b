// The chat state of one signed-in tab: threads (messages by conversation, each
// kept once whatever path it came by: REST history, live frame, sync, ack),
// unread counts, presence and typing. Views subscribe to its events.

import { api } from "./api.js";

export function conversationId(a, b) {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

const TYPING_SHOWN_MS = 6000;
let localSeq = 0;

class Thread {
  constructor(cid, me) {
    this.cid = cid;
    this.me = me;
    this.items = []; // sorted: stored messages by id, then pending ones in send order
    this.byId = new Map();
    this.byTemp = new Map();
    this.readUpTo = ""; // the other side has read my messages up to this id
    this.olderCursor = null;
    this.hasOlder = false;
    this.loaded = false;
  }

  sort() {
    this.items.sort((a, b) => {
      if (a.id && b.id) return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      if (a.id) return -1;
      if (b.id) return 1;
      return a.seq - b.seq;
    });
  }

  // Adds or merges a stored message; returns true when something changed.
  addStored(m) {
    const existing = this.byId.get(m.id);
    if (existing) {
      if (m.status === "read" && existing.fromUserId === this.me && m.id > this.readUpTo) this.readUpTo = m.id;
      return false;
    }
    let entry = m.tempId ? this.byTemp.get(m.tempId) : undefined;
    if (!entry && m.fromUserId === this.me && m.synced) {
      // A message of mine committed before its ack was lost: the sync brings it
      // back under its id while the outbox still holds it. Same text, not yet
      // acknowledged: the same message (the resend's ack confirms the id).
      entry = this.items.find((x) => !x.id && !x.failed && x.text === m.text);
    }
    if (entry) {
      entry.id = m.id;
      entry.createdAt = m.createdAt || entry.createdAt;
    } else {
      entry = { key: m.id, seq: ++localSeq, ...m };
      this.items.push(entry);
    }
    this.byId.set(m.id, entry);
    if (m.status === "read" && m.fromUserId === this.me && m.id > this.readUpTo) this.readUpTo = m.id;
    this.sort();
    return true;
  }

  addPending(tempId, toUserId, text) {
    const entry = {
      key: tempId,
      seq: ++localSeq,
      tempId,
      id: null,
      conversationId: this.cid,
      fromUserId: this.me,
      toUserId,
      text,
      createdAt: Date.now(),
    };
    this.items.push(entry);
    this.byTemp.set(tempId, entry);
    this.sort();
    return entry;
  }

  ack(tempId, id, createdAt) {
    const entry = this.byTemp.get(tempId);
    if (!entry) return false;
    const other = this.byId.get(id);
    if (other && other !== entry) {
      // Already here under its id (a sync beat the ack): keep one.
      this.items = this.items.filter((x) => x !== entry);
      other.tempId = tempId;
      this.byTemp.set(tempId, other);
      return true;
    }
    entry.id = id;
    entry.createdAt = createdAt || entry.createdAt;
    this.byId.set(id, entry);
    this.sort();
    return true;
  }

  newestInbound() {
    for (let i = this.items.length - 1; i >= 0; i -= 1) {
      const m = this.items[i];
      if (m.id && m.fromUserId !== this.me) return m;
    }
    return null;
  }
}

export class ChatStore extends EventTarget {
  constructor(me, socket) {
    super();
    this.me = me;
    this.socket = socket;
    this.threads = new Map();
    this.conversations = new Map(); // cid -> {id, user, lastMessage, unreadCount}
    this.convOrder = [];
    this.convLoaded = false;
    this.totalUnread = 0;
    this.presence = new Map(); // userId -> {status, lastSeen}
    this.typing = new Map(); // userId -> timeout
    this.lastReadSent = new Map(); // cid -> id
    this.activeCid = null; // the conversation on screen
    this.bind();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  thread(cid) {
    let t = this.threads.get(cid);
    if (!t) {
      t = new Thread(cid, this.me);
      this.threads.set(cid, t);
    }
    return t;
  }

  bind() {
    const s = this.socket;
    s.addEventListener("hello", (e) => {
      const d = e.detail;
      this.totalUnread = d.unreadCount || 0;
      for (const p of d.presence || []) this.presence.set(p.userId, p);
      this.emit("unread", this.totalUnread);
      this.emit("presence", null);
      if (!d.resumed) this.refreshAfterConnect();
    });
    s.addEventListener("resynced", (e) => {
      if (e.detail && e.detail.reset) this.refreshAfterConnect();
      this.markActiveRead();
    });
    s.addEventListener("state", () => {
      this.emit("thread", null); // pending messages change from queued to sending
      if (s.live) this.markActiveRead();
    });
    s.addEventListener("message", (e) => this.onMessage(e.detail));
    s.addEventListener("ack", (e) => {
      const { tempId, id, conversationId: cid, createdAt } = e.detail;
      const t = this.thread(cid);
      if (t.ack(tempId, id, createdAt)) {
        const entry = t.byId.get(id);
        this.touchConversation(cid, entry, false);
        this.emit("thread", cid);
      }
    });
    s.addEventListener("send-failed", (e) => {
      for (const t of this.threads.values()) {
        const entry = t.byTemp.get(e.detail.tempId);
        if (entry) {
          entry.failed = e.detail.message || e.detail.code;
          this.emit("thread", t.cid);
        }
      }
    });
    s.addEventListener("message-read", (e) => this.onRead(e.detail));
    s.addEventListener("typing", (e) => this.onTyping(e.detail));
    s.addEventListener("presence", (e) => {
      this.presence.set(e.detail.userId, e.detail);
      this.emit("presence", e.detail.userId);
    });
  }

  // After a fresh connect (no cursor): what REST holds now covers the gap
  // between the page's first reads and the socket's hello.
  refreshAfterConnect() {
    if (this.convLoaded) this.loadConversations().catch(() => {});
    for (const t of this.threads.values()) {
      if (t.loaded) this.loadNewest(t.cid).catch(() => {});
    }
  }

  onMessage(m) {
    const t = this.thread(m.conversationId);
    const changed = t.addStored(m);
    if (!changed) return;
    const inbound = m.fromUserId !== this.me;
    const seen = inbound && this.activeCid === m.conversationId && document.visibilityState === "visible";
    this.touchConversation(m.conversationId, t.byId.get(m.id), inbound && !seen);
    this.emit("thread", m.conversationId);
    if (inbound) {
      this.clearTyping(m.fromUserId);
      this.emit("incoming", m);
    }
    if (seen) this.markActiveRead();
  }

  touchConversation(cid, entry, countUnread) {
    if (!entry || !entry.id) return;
    const conv = this.conversations.get(cid);
    if (!conv) {
      // A conversation the list does not show yet: read it again.
      if (this.convLoaded) this.scheduleConversationReload();
      if (countUnread) this.bumpUnread(1);
      return;
    }
    if (!conv.lastMessage || entry.id >= conv.lastMessage.id) {
      conv.lastMessage = { ...entry };
      this.convOrder = [cid, ...this.convOrder.filter((x) => x !== cid)];
    }
    if (countUnread) {
      conv.unreadCount = (conv.unreadCount || 0) + 1;
      this.bumpUnread(1);
    }
    this.emit("conversations", cid);
  }

  bumpUnread(n) {
    this.totalUnread = Math.max(0, this.totalUnread + n);
    this.emit("unread", this.totalUnread);
  }

  scheduleConversationReload() {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.loadConversations().catch(() => {}), 300);
  }

  onRead(d) {
    const t = this.thread(d.conversationId);
    if (d.readerId === this.me) {
      // I read it here or on another device.
      const conv = this.conversations.get(d.conversationId);
      if (conv) {
        conv.unreadCount = 0;
        this.emit("conversations", d.conversationId);
      }
      if (typeof d.unreadCount === "number") {
        this.totalUnread = d.unreadCount;
        this.emit("unread", this.totalUnread);
      }
      return;
    }
    if (d.upToMessageId > t.readUpTo) {
      t.readUpTo = d.upToMessageId;
      this.emit("thread", d.conversationId);
    }
  }

  onTyping(d) {
    clearTimeout(this.typing.get(d.fromUserId));
    if (d.state === "start") {
      this.typing.set(d.fromUserId, setTimeout(() => this.clearTyping(d.fromUserId), TYPING_SHOWN_MS));
    } else {
      this.typing.delete(d.fromUserId);
    }
    this.emit("typing", d.fromUserId);
  }

  clearTyping(userId) {
    if (!this.typing.has(userId)) return;
    clearTimeout(this.typing.get(userId));
    this.typing.delete(userId);
    this.emit("typing", userId);
  }

  isTyping(userId) {
    return this.typing.has(userId);
  }

  // -- REST reads ---------------------------------------------------------------

  async loadConversations() {
    const page = await api.get("/api/conversations", { limit: 100 });
    this.conversations.clear();
    this.convOrder = [];
    for (const c of page.items) {
      this.conversations.set(c.id, c);
      this.convOrder.push(c.id);
    }
    this.convLoaded = true;
    this.emit("conversations", null);
    return page;
  }

  async loadNewest(cid) {
    const t = this.thread(cid);
    const page = await api.get(`/api/conversations/${cid}/messages`, { limit: 30 });
    for (const m of page.messages) t.addStored(restMessage(m));
    if (!t.loaded) {
      t.olderCursor = page.nextCursor;
      t.hasOlder = Boolean(page.nextCursor);
      t.loaded = true;
    }
    this.emit("thread", cid);
    return t;
  }

  async loadOlder(cid) {
    const t = this.thread(cid);
    if (!t.hasOlder) return 0;
    const page = await api.get(`/api/conversations/${cid}/messages`, { limit: 30, before: t.olderCursor });
    for (const m of page.messages) t.addStored(restMessage(m));
    t.olderCursor = page.nextCursor;
    t.hasOlder = Boolean(page.nextCursor);
    this.emit("thread", cid);
    return page.messages.length;
  }

  // -- actions --------------------------------------------------------------------

  send(toUserId, text) {
    const cid = conversationId(this.me, toUserId);
    const t = this.thread(cid);
    const tempId = this.socket.sendMessage(toUserId, text);
    t.addPending(tempId, toUserId, text);
    this.emit("thread", cid);
    return tempId;
  }

  retry(cid, entry) {
    const t = this.thread(cid);
    t.items = t.items.filter((x) => x !== entry);
    t.byTemp.delete(entry.tempId);
    return this.send(entry.toUserId, entry.text);
  }

  setActive(cid) {
    this.activeCid = cid;
    if (cid) this.markActiveRead();
  }

  markActiveRead() {
    const cid = this.activeCid;
    if (!cid || document.visibilityState !== "visible") return;
    const t = this.threads.get(cid);
    const newest = t && t.newestInbound();
    if (!newest) return;
    const conv = this.conversations.get(cid);
    const last = this.lastReadSent.get(cid) || "";
    if (newest.id <= last && !(conv && conv.unreadCount)) return;
    if (this.socket.sendRead(cid, newest.id)) this.lastReadSent.set(cid, newest.id);
  }

  // What a message of mine shows: sending/queued, sent (with its id), read, failed.
  stateOf(t, m) {
    if (m.fromUserId !== this.me) return "received";
    if (m.failed) return "failed";
    if (!m.id) return this.socket.live ? "sending" : "queued";
    if (t.readUpTo && m.id <= t.readUpTo) return "read";
    return "sent";
  }
}

function restMessage(m) {
  return {
    id: m.id,
    conversationId: m.conversationId,
    fromUserId: m.fromUserId,
    toUserId: m.toUserId,
    text: m.text,
    createdAt: Date.parse(m.createdAt),
    status: m.status,
  };
}
