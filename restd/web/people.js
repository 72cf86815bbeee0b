// Pieces shared by the views that show people: a person's summary and the
// "Connect" control (a request with an optional note).

import { api } from "./api.js";
import { avatar, chips, errorText, field, h, proBadge, replace, toast } from "./dom.js";

export function personSummary(user, { link = true, presence, extra } = {}) {
  const name = link
    ? h("a", { class: "person-name", href: `/profile/${user.id}`, testid: "person-name", text: user.name })
    : h("span", { class: "person-name", testid: "person-name", text: user.name });
  return h(
    "div",
    { class: "person" },
    avatar(user, { presence }),
    h(
      "div",
      { class: "person-body" },
      h("div", { class: "row" }, name, proBadge(user)),
      user.headline ? h("p", { class: "headline", text: user.headline }) : null,
      user.location ? h("p", { class: "headline small", text: user.location }) : null,
      chips(user.skills),
      extra,
    ),
  );
}

// Connect button -> a short form with a note -> "Request sent".
export function connectControl(user, { fromFeed = false, onSent } = {}) {
  const box = h("div", { class: "connect", testid: "connect-control" });
  const openButton = h("button", {
    type: "button",
    class: "btn btn-primary btn-small",
    testid: "connect",
    "aria-label": `Connect with ${user.name}`,
    text: "Connect",
  });
  const showButton = () => replace(box, openButton);
  openButton.addEventListener("click", () => {
    const note = h("textarea", { name: "message", maxlength: "500", rows: "2", testid: "connect-note" });
    const error = h("p", { class: "form-error", role: "alert" });
    const send = h("button", { type: "submit", class: "btn btn-primary btn-small", testid: "send-request", text: "Send request" });
    const cancel = h("button", { type: "button", class: "btn btn-small", text: "Cancel", onclick: () => { showButton(); openButton.focus(); } });
    const form = h("form", { class: "connect-form", "aria-label": `Request to ${user.name}` }, field(`Note to ${user.name} (optional)`, note), error, h("div", { class: "actions" }, send, cancel));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      send.disabled = true;
      try {
        const request = await api.post("/api/connection-requests", { toUserId: user.id, message: note.value.trim() });
        if (fromFeed) api.post("/api/feed/events", { type: "request_sent", userId: user.id }).catch(() => {});
        const text = request.status === "accepted" ? `You are now connected with ${user.name}.` : `Request sent to ${user.name}.`;
        replace(box, h("p", { class: "state-note", role: "status", testid: "request-sent", text: request.status === "accepted" ? "Connected" : "Request sent" }));
        toast(text);
        if (onSent) onSent(request);
      } catch (err) {
        error.textContent = errorText(err);
        send.disabled = false;
      }
    });
    replace(box, form);
    note.focus();
  });
  showButton();
  return box;
}
