// Membership: the plans, paying through PhonePe (its page, then back here at
// /payments/<orderId>), and the order's status until it settles.

import { api } from "./api.js";
import { errorText, h, replace } from "./dom.js";

const POLL_MS = 1500;
const POLL_SLOW_MS = 5000;
const POLL_FAST_FOR_MS = 60000;

function money(paise, currency) {
  try {
    return new Intl.NumberFormat("en-IN", { style: "currency", currency }).format(paise / 100);
  } catch {
    return `${(paise / 100).toFixed(2)} ${currency}`;
  }
}

const date = (iso) => (iso ? new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" }) : "");

function membershipStatus(me) {
  const m = me.membership;
  if (m && m.active) {
    return h(
      "div",
      { class: "card", testid: "membership-status" },
      h("p", { class: "row" }, h("span", { class: "badge badge-pro", testid: "pro-badge", text: "Pro" }), h("strong", { text: "You are a Pro member" })),
      m.expiresAt ? h("p", { class: "muted", text: `Until ${date(m.expiresAt)}.` }) : null,
    );
  }
  return h("div", { class: "card", testid: "membership-status" }, h("p", { text: "You are on the free plan." }), h("p", { class: "muted", text: "Pro members can send more connection requests a day and carry the Pro badge." }));
}

export async function renderMembership(app, root) {
  root.append(h("h1", { text: "Membership" }));
  const me = await app.reloadMe().catch(() => app.me);
  root.append(membershipStatus(me));
  const plansList = h("ul", { class: "plans list", testid: "plans" });
  const error = h("p", { class: "form-error", role: "alert", testid: "pay-error" });
  root.append(h("section", { class: "stack", "aria-labelledby": "plans-title" }, h("h2", { id: "plans-title", text: "Plans" }), error, plansList));
  let plans;
  try {
    plans = (await api.get("/api/payments/plans")).items;
  } catch (err) {
    error.textContent = errorText(err);
    return;
  }
  for (const plan of plans) {
    const pay = h("button", { type: "button", class: "btn btn-primary", testid: "pay", dataset: { plan: plan.id }, "aria-label": `Pay for ${plan.name}`, text: "Pay with PhonePe" });
    pay.addEventListener("click", async () => {
      pay.disabled = true;
      error.textContent = "";
      try {
        const order = await api.post("/api/payments/create", { plan: plan.id });
        // Leaves the app for the provider's page; it sends the browser back to /payments/<orderId>.
        window.location.assign(order.paymentUrl);
      } catch (err) {
        error.textContent = errorText(err);
        pay.disabled = false;
      }
    });
    plansList.append(
      h(
        "li",
        { class: "card", testid: "plan", dataset: { plan: plan.id } },
        h("h3", { text: plan.name }),
        h("p", { class: "price", text: money(plan.amount, plan.currency) }),
        h("p", { class: "muted", text: `${plan.durationDays} days of Pro` }),
        h("div", { class: "actions" }, pay),
      ),
    );
  }
}

export async function renderPayment(app, root, params) {
  const orderId = params[0];
  root.append(h("h1", { text: "Payment" }));
  const box = h("div", { class: "card stack", testid: "payment", "aria-live": "polite" }, h("p", { class: "muted", text: "Checking your payment…" }));
  root.append(box);
  const started = Date.now();
  let timer = null;
  let stopped = false;

  async function check() {
    let order;
    try {
      order = await api.get(`/api/payments/${orderId}`);
    } catch (err) {
      replace(box, h("p", { class: "form-error", role: "alert", text: errorText(err) }), h("p", {}, h("a", { href: "/membership", text: "Back to membership" })));
      if (err.status === 0 && !stopped) timer = setTimeout(check, POLL_SLOW_MS);
      return;
    }
    if (stopped) return;
    const pill = h("span", { class: `status-pill ${order.status}`, testid: "payment-status", text: order.status });
    const lines = [h("p", { class: "row" }, h("span", { text: `${order.plan} · ${money(order.amount, order.currency)}` }), pill), h("p", { class: "muted small", text: `Order ${order.orderId}` })];
    if (order.status === "PENDING") {
      lines.push(h("p", { text: "Waiting for PhonePe to confirm your payment. This page updates by itself." }));
      if (order.paymentUrl) lines.push(h("p", {}, h("a", { href: order.paymentUrl, dataset: { external: "" }, text: "Return to the payment page" })));
      timer = setTimeout(check, Date.now() - started < POLL_FAST_FOR_MS ? POLL_MS : POLL_SLOW_MS);
    } else if (order.status === "COMPLETED") {
      const me = await app.reloadMe().catch(() => app.me);
      lines.push(
        h("p", { class: "row" }, h("span", { class: "badge badge-pro", testid: "pro-badge", text: "Pro" }), h("strong", { testid: "payment-done", text: "Payment received: you are now a Pro member." })),
        me.membership && me.membership.expiresAt ? h("p", { class: "muted", text: `Pro until ${new Date(me.membership.expiresAt).toLocaleDateString()}.` }) : null,
        h("p", {}, h("a", { href: "/feed", text: "Back to your feed" })),
      );
    } else {
      lines.push(h("p", { class: "form-error", text: order.status === "FAILED" ? "The payment did not go through. Nothing was charged." : "The payment window expired." }), h("p", {}, h("a", { href: "/membership", class: "btn", text: "Try again" })));
    }
    replace(box, lines);
  }
  await check();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
