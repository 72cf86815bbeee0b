// History-API routing over real paths; the server answers every non-API path
// with this app's shell, so a reload or a deep link lands on the same view.

export class Router {
  constructor(routes, onRoute) {
    this.routes = routes.map(([pattern, name]) => [new RegExp(`^${pattern}$`), name]);
    this.onRoute = onRoute;
    window.addEventListener("popstate", () => this.resolve());
    document.addEventListener("click", (event) => this.onClick(event));
  }

  onClick(event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const a = event.target.closest && event.target.closest("a[href]");
    if (!a || a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
    event.preventDefault();
    this.go(url.pathname + url.search);
  }

  go(path, { replace = false } = {}) {
    if (path === location.pathname + location.search && !replace) return this.resolve();
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    return this.resolve();
  }

  match(pathname) {
    for (const [re, name] of this.routes) {
      const m = re.exec(pathname);
      if (m) return { name, params: m.slice(1).map(decodeURIComponent) };
    }
    return { name: "not-found", params: [] };
  }

  resolve() {
    const { name, params } = this.match(location.pathname);
    return this.onRoute(name, params, new URLSearchParams(location.search));
  }
}
