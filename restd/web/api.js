// The REST client. Same-origin fetch carries the HttpOnly session cookies; a 401
// refreshes the session once (POST /api/auth/refresh rotates the cookies) and
// retries the request. Concurrent 401s share one refresh.

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `Request failed (${status})`);
    this.status = status;
    this.code = err.code || (status === 0 ? "network" : "error");
    this.details = err.details;
  }
}

const listeners = new Set();
// Called when the session is gone for good (refresh refused).
export function onSessionLost(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

let refreshing = null;

// Rotates the session; resolves to the fresh access token, or null if signed out.
export function refreshSession() {
  if (!refreshing) {
    refreshing = (async () => {
      let resp;
      try {
        resp = await fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" });
      } catch {
        throw new ApiError(0, { error: { message: "You appear to be offline." } });
      }
      if (resp.ok) return (await resp.json()).accessToken || "";
      if (resp.status === 401) return null;
      throw new ApiError(resp.status, await resp.json().catch(() => null));
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

const NO_REFRESH = new Set(["/api/auth/login", "/api/auth/signup", "/api/auth/refresh", "/api/auth/logout"]);

export async function request(method, path, body, { retry = true } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, { error: { message: "Network error: check your connection and try again." } });
  }
  if (resp.status === 401 && retry && !NO_REFRESH.has(path.split("?")[0])) {
    const token = await refreshSession().catch(() => null);
    if (token !== null) return request(method, path, body, { retry: false });
    for (const fn of listeners) fn();
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function qs(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") search.set(k, String(v));
  }
  const s = search.toString();
  return s ? `?${s}` : "";
}

export const api = {
  get: (path, params) => request("GET", path + qs(params)),
  post: (path, body) => request("POST", path, body === undefined ? {} : body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
};

export const clientConfig = () => request("GET", "/api/client-config", undefined, { retry: false });
