// The app's entry: boot (config, session), the header, routing, and the
// signed-in services (chat socket and chat store) shared by every view.

import { api, clientConfig, onSessionLost } from "./api.js";
import { renderLogin, renderSignup } from "./auth.js";
import { renderChat } from "./chat.js";
import { ChatStore } from "./chatstore.js";
import { renderConnections } from "./connections.js";
import { h, replace, toast } from "./dom.js";
import { renderFeed } from "./feed.js";
import { renderMembership, renderPayment } from "./membership.js";
import { renderProfile, renderUser } from "./profile.js";
import { Router } from "./router.js";
import { renderSettings } from "./settings.js";
import { ChatSocket } from "./socket.js";

const ID = "([0-9a-f]{24})";
const ROUTES = [
  ["/", "home"],
  ["/login", "login"],
  ["/signup", "signup"],
  ["/feed", "feed"],
  ["/connections", "connections"],
  ["/chat", "chat"],
  [`/chat/${ID}`, "chat"],
  ["/profile", "profile"],
  [`/profile/${ID}`, "user"],
  [`/users/${ID}`, "user"],
  ["/settings", "settings"],
  ["/membership", "membership"],
  ["/payments/(DC[0-9a-f]{24})", "payment"],
];
const VIEWS = {
  login: renderLogin,
  signup: renderSignup,
  feed: renderFeed,
  connections: renderConnections,
  chat: renderChat,
  profile: renderProfile,
  user: renderUser,
  settings: renderSettings,
  membership: renderMembership,
  payment: renderPayment,
};
const PUBLIC_VIEWS = new Set(["login", "signup"]);
const NAV_OF = { user: "feed", payment: "membership" };
const STATE_TEXT = {
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  syncing: "Catching up…",
  offline: "Offline: messages wait to be sent",
};

const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.me = null;
    this.config = null;
    this.socket = null;
    this.store = null;
    this.cleanup = null;
    this.renderSeq = 0;
    this.firstRender = true;
    this.pendingIncoming = 0;
    this.channel = "BroadcastChannel" in window ? new BroadcastChannel("devconnect") : null;
    this.router = new Router(ROUTES, (name, params, query) => this.show(name, params, query));
  }

  async boot() {
    $("logout-button").addEventListener("click", () => this.logout());
    onSessionLost(() => this.sessionLost());
    if (this.channel) {
      this.channel.onmessage = (event) => {
        if (event.data === "signed-out") this.sessionLost(false);
        if (event.data === "signed-in" && !this.me) this.restore();
      };
    }
    try {
      this.config = await clientConfig();
    } catch {
      this.config = { chatUrl: null };
    }
    await this.restore();
  }

  async restore() {
    try {
      this.setMe(await api.get("/api/auth/me"));
      this.startServices();
    } catch {
      this.setMe(null);
    }
    this.router.resolve();
  }

  setMe(user) {
    this.me = user;
    const signedIn = Boolean(user);
    $("header-user").hidden = !signedIn;
    $("app-nav").hidden = !signedIn;
    if (signedIn) {
      $("header-name").textContent = user.name;
      $("header-pro").hidden = !(user.badges || []).includes("pro");
    }
  }

  async reloadMe() {
    this.setMe(await api.get("/api/auth/me"));
    return this.me;
  }

  // -- after sign-in --------------------------------------------------------------

  startServices() {
    if (this.socket || !this.config.chatUrl) return;
    const socket = new ChatSocket(this.config.chatUrl);
    this.socket = socket;
    this.store = new ChatStore(this.me.id, socket);
    socket.addEventListener("state", (e) => this.showConnState(e.detail));
    socket.addEventListener("session-lost", () => this.sessionLost());
    socket.addEventListener("notice", (e) => toast(e.detail, { error: true }));
    socket.addEventListener("connection-request", (e) => {
      const from = (e.detail && e.detail.fromUser && e.detail.fromUser.name) || "Someone";
      toast(`${from} wants to connect`);
      this.countIncoming().catch(() => {});
    });
    socket.addEventListener("connection-accepted", (e) => {
      const who = (e.detail && e.detail.toUser && e.detail.toUser.name) || "Someone";
      toast(`${who} accepted your request`);
    });
    this.store.addEventListener("unread", (e) => this.showCount("nav-unread", e.detail));
    socket.start();
    this.countIncoming().catch(() => {});
  }

  stopServices() {
    if (this.socket) this.socket.stop();
    this.socket = null;
    this.store = null;
    $("conn-state").hidden = true;
  }

  showConnState(state) {
    const el = $("conn-state");
    const text = STATE_TEXT[state];
    el.hidden = !text;
    el.textContent = text || "";
    el.dataset.state = state;
    document.body.dataset.chat = state;
    document.body.dataset.chatOpens = String(this.socket ? this.socket.opens : 0);
  }

  showCount(id, n) {
    const el = $(id);
    el.hidden = !n;
    el.textContent = n ? String(n) : "";
    $(`${id}-sr`).hidden = !n; // " unread", " pending requests" for screen readers
  }

  async countIncoming() {
    const page = await api.get("/api/connection-requests", { direction: "incoming", status: "pending", limit: 100 });
    this.pendingIncoming = page.items.length;
    this.showCount("nav-requests", this.pendingIncoming);
  }

  async signedIn(user, next) {
    this.setMe(user);
    this.startServices();
    if (this.channel) this.channel.postMessage("signed-in");
    await this.router.go(next && next.startsWith("/") && !next.startsWith("//") ? next : "/feed", { replace: true });
  }

  async logout({ everywhere = false } = {}) {
    try {
      await api.post(everywhere ? "/api/auth/logout-all" : "/api/auth/logout");
    } catch (err) {
      if (err.status !== 401) {
        toast(err.message, { error: true });
        return;
      }
    }
    if (this.channel) this.channel.postMessage("signed-out");
    this.sessionLost(false);
    toast(everywhere ? "Signed out on every device." : "Signed out.");
  }

  sessionLost(say = true) {
    if (!this.me) return;
    this.stopServices();
    this.setMe(null);
    if (say) toast("Your session ended: please sign in again.", { error: true });
    this.router.go("/login", { replace: true });
  }

  // -- views ----------------------------------------------------------------------

  async show(name, params, query) {
    if (name === "home") name = this.me ? "feed" : "login";
    if (!PUBLIC_VIEWS.has(name) && name !== "not-found" && !this.me) {
      const next = location.pathname + location.search;
      history.replaceState(null, "", `/login?next=${encodeURIComponent(next)}`);
      query = new URLSearchParams(location.search);
      name = "login";
    } else if (PUBLIC_VIEWS.has(name) && this.me) {
      history.replaceState(null, "", "/feed");
      name = "feed";
    }
    const seq = ++this.renderSeq;
    if (this.cleanup) {
      try {
        this.cleanup();
      } catch {
        /* a view's cleanup must not stop the next view */
      }
      this.cleanup = null;
    }
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === (NAV_OF[name] || name)) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const main = $("main");
    main.dataset.view = name;
    // Each view draws into its own root: a slow, superseded view writes into a
    // detached element, never into the next view.
    const root = h("div", { class: "view", testid: `view-${name}` });
    replace(main, root);
    const view = VIEWS[name];
    if (!view) {
      document.title = "Not found · DevConnect";
      root.append(h("h1", { tabindex: "-1", text: "Page not found" }), h("p", {}, h("a", { href: "/", text: "Go home" })));
      return;
    }
    const cleanup = await view(this, root, params, query);
    if (seq !== this.renderSeq) {
      if (typeof cleanup === "function") cleanup();
      return;
    }
    this.cleanup = typeof cleanup === "function" ? cleanup : null;
    const heading = main.querySelector("h1");
    if (heading) {
      document.title = `${heading.textContent} · DevConnect`;
      heading.setAttribute("tabindex", "-1");
      if (!this.firstRender && !root.contains(document.activeElement)) heading.focus({ preventScroll: true });
    }
    this.firstRender = false;
  }

  go(path, opts) {
    return this.router.go(path, opts);
  }
}

// Module scripts run once the document is parsed: the shell's elements exist.
new App().boot();
