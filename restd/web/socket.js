// The chat socket (proto/PROTOCOL.md): one per tab, authenticated by the access
// cookie. It reconnects with capped, jittered backoff; after a reconnect it
// syncs from the cursor of the last frame it processed and ignores live
// messages until the sync is complete, so nothing is missed and nothing
// repeats. Messages typed while it is down wait in the outbox and go out, with
// their original tempId, once the socket is live again; the server turns a
// repeated tempId into the same message, never a second copy.

import { api, refreshSession } from "./api.js";

const SUBPROTOCOL = "devconnect.v1.json";
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const HELLO_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 20000;
const SILENT_AFTER_MS = 45000; // no frame at all for this long: the socket is dead
// Send `auth` this long before the access token expires (a quarter of what is left,
// for short-lived tokens).
const RENEW_BEFORE_S = 60;
const RETRYABLE = new Set(["unavailable", "rate-limited", "internal"]);
const RETRY_SEND_MS = 1500;

export function newTempId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ChatSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.state = "idle"; // connecting | syncing | online | reconnecting | offline | stopped
    this.cursor = null; // of the last frame processed; null until the first hello
    this.outbox = new Map(); // tempId -> private-message data, in send order
    this.inFlight = new Set(); // tempIds written to the current socket
    this.attempt = 0;
    this.opens = 0; // sockets opened so far (a renewal in place opens none)
    this.timers = {};
    this.stopped = true;
    this.lastFrameAt = 0;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.drop("offline");
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  get live() {
    return this.state === "online";
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    for (const key of Object.keys(this.timers)) this.clearTimer(key);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      ws.close(1000);
    }
    this.setState("stopped");
  }

  timer(key, ms, fn, repeat = false) {
    this.clearTimer(key);
    this.timers[key] = repeat ? setInterval(fn, ms) : setTimeout(fn, ms);
  }

  clearTimer(key) {
    if (this.timers[key] !== undefined) {
      clearTimeout(this.timers[key]);
      clearInterval(this.timers[key]);
      delete this.timers[key];
    }
  }

  // -- connecting ---------------------------------------------------------------

  connect() {
    if (this.stopped || this.ws) return;
    if (navigator.onLine === false) {
      this.setState("offline");
      // The browser says offline; try again now and then in case it is wrong.
      this.timer("retry", 5000, () => this.connect());
      return;
    }
    this.setState(this.cursor ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
      this.opens += 1;
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.gotHello = false;
    this.syncing = false;
    this.inFlight.clear();
    this.lastFrameAt = Date.now();
    ws.onmessage = (event) => this.onFrame(ws, event.data);
    ws.onclose = (event) => this.onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
    this.timer("hello", HELLO_TIMEOUT_MS, () => {
      if (this.ws === ws && !this.gotHello) this.drop("no hello");
    });
  }

  reconnectNow() {
    if (this.stopped) return;
    this.attempt = 0;
    this.clearTimer("retry");
    if (!this.ws) this.connect();
  }

  // Abandons the current socket at once: a dead network may take minutes to
  // deliver its close event.
  drop(why) {
    const ws = this.ws;
    if (!ws) {
      if (why === "offline" && !this.stopped) this.setState("offline");
      return;
    }
    detach(ws);
    try {
      ws.close(1000, why);
    } catch {
      /* already closing */
    }
    this.onClose(ws, why === "offline" ? 4990 : 1006, why);
  }

  async onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.clearTimer("hello");
    this.clearTimer("ping");
    this.clearTimer("renew");
    const hadHello = this.gotHello;
    this.gotHello = false;
    this.syncing = false;
    this.inFlight.clear();
    this.emit("closed", { code, reason });
    if (this.stopped) return;
    if (code === 4001) {
      // Logged out everywhere: the session is revoked.
      this.emit("session-lost", { code });
      this.stop();
      return;
    }
    if (code === 4990) {
      this.setState("offline");
      this.timer("retry", 5000, () => this.connect());
      return;
    }
    this.setState("reconnecting");
    if (code === 4003) {
      this.emit("notice", "Too many open tabs or devices: close one to chat here.");
      this.timer("retry", 30000, () => this.connect());
      return;
    }
    if (code === 1012) {
      let wait = 1000;
      try {
        wait = JSON.parse(reason).reconnectAfterMs ?? wait;
      } catch {
        /* no hint */
      }
      this.timer("retry", wait, () => this.connect());
      return;
    }
    if (code === 4002 || !hadHello) {
      // The token expired (4002), or the handshake failed: maybe a 401. A REST
      // call refreshes the session when it is the cookie that went stale.
      const ok = await this.ensureSession();
      if (ok === false) return;
      if (code === 4002) {
        this.timer("retry", 100, () => this.connect());
        return;
      }
    }
    this.scheduleReconnect();
  }

  async ensureSession() {
    try {
      await api.get("/api/auth/me");
      return true;
    } catch (err) {
      if (err.status === 401) {
        this.emit("session-lost", { code: 401 });
        this.stop();
        return false;
      }
      return null; // network trouble: keep trying
    }
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const wait = Math.round(cap / 2 + (Math.random() * cap) / 2);
    this.attempt += 1;
    this.emit("retrying", { inMs: wait, attempt: this.attempt });
    this.timer("retry", wait, () => this.connect());
  }

  // -- frames -------------------------------------------------------------------

  write(type, data) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ type, data }));
    return true;
  }

  onFrame(ws, raw) {
    if (ws !== this.ws) return;
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    const { type, data } = frame || {};
    switch (type) {
      case "hello":
        return this.handleHello(data);
      case "sync-result":
        return this.handleSyncResult(data);
      case "incoming-message":
        if (this.syncing) return; // inside the sync's answer
        this.cursor = data.cursor;
        return this.emit("message", normalize(data));
      case "message-delivered":
        this.cursor = data.cursor;
        this.outbox.delete(data.tempId);
        this.inFlight.delete(data.tempId);
        return this.emit("ack", {
          tempId: data.tempId,
          id: data.messageId,
          conversationId: data.conversationId,
          createdAt: data.createdAt,
        });
      case "error":
        return this.handleError(data);
      case "message-read":
      case "typing":
      case "presence":
      case "connection-request":
      case "connection-accepted":
        return this.emit(type, data);
      case "auth-ok":
        return this.scheduleRenewal(data.expiresAt);
      default:
        return undefined; // pong and anything newer
    }
  }

  handleHello(data) {
    this.gotHello = true;
    this.clearTimer("hello");
    this.attempt = 0;
    this.userId = data.userId;
    const resumed = this.cursor !== null;
    this.emit("hello", { ...data, resumed });
    this.scheduleRenewal(data.tokenExpiresAt);
    this.timer("ping", PING_EVERY_MS, () => this.heartbeat(), true);
    if (resumed) {
      this.syncing = true;
      this.setState("syncing");
      this.write("sync", { cursor: this.cursor });
    } else {
      this.cursor = data.cursor;
      this.goLive();
    }
  }

  handleSyncResult(data) {
    for (const message of data.messages || []) this.emit("message", { ...normalize(message), synced: true });
    this.cursor = data.cursor;
    if (data.hasMore) {
      this.write("sync", { cursor: this.cursor });
      return;
    }
    this.syncing = false;
    this.goLive();
    this.emit("resynced", {});
  }

  goLive() {
    this.setState("online");
    this.flush();
  }

  handleError(data) {
    if (data.code === "invalid-cursor" && this.syncing) {
      // A cursor this server does not know: start over from now; views reload history.
      this.cursor = null;
      this.syncing = false;
      this.goLive();
      this.emit("resynced", { reset: true });
      return;
    }
    if (!data.tempId || !this.outbox.has(data.tempId)) {
      this.emit("server-error", data);
      return;
    }
    this.inFlight.delete(data.tempId);
    if (RETRYABLE.has(data.code)) {
      // Nothing was stored; the same tempId goes again shortly.
      setTimeout(() => this.flush(), RETRY_SEND_MS);
      return;
    }
    this.outbox.delete(data.tempId);
    this.emit("send-failed", data);
  }

  heartbeat() {
    if (Date.now() - this.lastFrameAt > SILENT_AFTER_MS) {
      this.drop("silent");
      return;
    }
    this.write("ping", {});
  }

  scheduleRenewal(expiresAtS) {
    if (!expiresAtS) return;
    const leftMs = expiresAtS * 1000 - Date.now();
    const inMs = Math.max(5000, leftMs - Math.min(RENEW_BEFORE_S * 1000, leftMs / 4));
    this.timer("renew", inMs, () => this.renew());
  }

  async renew() {
    try {
      const token = await refreshSession();
      if (token === null) {
        this.emit("session-lost", { code: 401 });
        this.stop();
        return;
      }
      if (token) this.write("auth", { token });
    } catch {
      this.timer("renew", 10000, () => this.renew());
    }
  }

  // -- sending ------------------------------------------------------------------

  sendMessage(toUserId, text, tempId = newTempId()) {
    this.outbox.set(tempId, { toUserId, tempId, text });
    this.flush();
    return tempId;
  }

  flush() {
    if (!this.live) return;
    for (const [tempId, data] of this.outbox) {
      if (this.inFlight.has(tempId)) continue;
      if (!this.write("private-message", data)) return;
      this.inFlight.add(tempId);
    }
  }

  isSending(tempId) {
    return this.inFlight.has(tempId);
  }

  sendTyping(toUserId, state) {
    if (this.live) this.write("typing", { toUserId, state });
  }

  sendRead(conversationId, upToMessageId) {
    if (!this.live) return false;
    return this.write("message-read", { conversationId, upToMessageId });
  }
}

function detach(ws) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}

function normalize(m) {
  return {
    id: m.messageId,
    conversationId: m.conversationId,
    fromUserId: m.fromUserId,
    toUserId: m.toUserId,
    text: m.text,
    createdAt: m.createdAt,
  };
}
