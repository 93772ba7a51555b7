// DOM building. Everything a person or the server wrote goes in as text (textContent),
// never as HTML. Names go in a <bdi> and texts get dir="auto": one written right to left
// (Hebrew, Arabic) then reads right, and does not reorder what is beside it.

const FILE_MESSAGE = /^\[File: (.*)\]\(\/files\/([0-9a-fA-F-]{36})\)$/s;
const IMAGE_NAME = /\.(png|jpe?g|gif|webp)$/i;

export function el(tag, { text, className, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// A name in a line of text, isolated so that one written right to left does not pull
// the words or names beside it into its direction.
export const isolated = (name) => el("bdi", { text: name });

// The same for plain text (a title, a notification), with FSI ... PDI as <bdi> would.
export const isolatedText = (name) => `\u2068${name}\u2069`;

// A control that cannot be used for a while but keeps its focus: aria-disabled, which
// its handler checks, rather than `disabled`, which drops the focus to the page's body.
export function setAriaDisabled(button, on) {
  if (on) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
}

export const ariaDisabled = (button) => button.getAttribute("aria-disabled") === "true";

// `id` added to (first) or taken from the ids of what describes `node` (aria-describedby).
export function describedBy(node, id, on) {
  const ids = (node.getAttribute("aria-describedby") ?? "").split(" ").filter((other) => other && other !== id);
  if (on) ids.unshift(id);
  if (ids.length) node.setAttribute("aria-describedby", ids.join(" "));
  else node.removeAttribute("aria-describedby");
}

// The one plaintext chat message: `[File: NAME](/files/ID)` (PROTOCOL.md).
export function parseFileMessage(content) {
  const match = FILE_MESSAGE.exec(content);
  return match ? { name: match[1], id: match[2].toLowerCase(), isImage: IMAGE_NAME.test(match[1]) } : null;
}

// A message's local time; one from another day (history reaches back days) with its date.
export function localTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const time = { hour: "2-digit", minute: "2-digit" };
  if (when.toDateString() === new Date().toDateString()) return when.toLocaleTimeString([], time);
  const year = when.getFullYear() === new Date().getFullYear() ? {} : { year: "numeric" };
  return when.toLocaleString([], { month: "short", day: "numeric", ...year, ...time });
}

// What a message's body can be. Messages the page cannot attribute (a sealed room's
// message that does not verify, or one it has no key for) carry no sender's name.
const UNATTRIBUTED = {
  unverified: "This message could not be verified.",
  locked: "Sealed message: open the room's whole link to read it.",
};

// body: {text} | {undecryptable: true} | {unsupported: true} | {unverified: true} |
// {locked: true} | {file: {name, id, card?}} (a card: a sealed room's file, fetched and
// decrypted in the page, so a button rather than a link to the encrypted blob).
// `me`: the reader's name, whose mentions are highlighted.
export function messageItem(message, body, { mine, me }) {
  const kind = Object.keys(UNATTRIBUTED).find((key) => body[key]);
  const time = el("time", { text: localTime(message.sent_at), attrs: { datetime: message.sent_at } });
  const head = kind
    ? el("p", { className: "meta" }, [time])
    : el("p", { className: "meta" }, [el("bdi", { className: "sender", text: message.sender }), " ", time]);
  const item = el("li", { className: mine && !kind ? "message mine" : "message", attrs: { "data-id": String(message.id) } }, [head]);
  // Never for a message the page cannot attribute: quotes and rights read it.
  if (!kind) item.dataset.sender = message.sender;
  item.dataset.sentAt = message.sent_at;
  if (message.reply_to != null) item.append(quoteButton(message.reply_to));
  if (kind) {
    item.classList.add(kind);
    item.append(el("p", { className: "text", text: UNATTRIBUTED[kind] }));
  } else if (body.file) {
    item.classList.add("file");
    item.dataset.fileId = body.file.id;
    const link = body.file.card
      ? el("button", { text: body.file.name, className: "file-link", attrs: { type: "button" } })
      : // `download`: a file gone (404) or a busy server (503) fails as a download and
        // never takes the tab away from the room.
        el("a", { text: body.file.name, attrs: { href: `/files/${body.file.id}`, download: "" } });
    item.append(el("p", { className: "text" }, ["File: ", link]));
  } else if (body.undecryptable) {
    item.classList.add("undecryptable");
    item.append(el("p", { className: "text", text: "This message could not be decrypted." }));
  } else if (body.unsupported) {
    item.classList.add("undecryptable");
    item.append(el("p", { className: "text", text: "(unsupported message)" }));
  } else {
    item.classList.add("chat-text");
    item.append(el("p", { className: "text", attrs: { dir: "auto" } }));
    setText(item, body.text, mine ? null : me);
  }
  if (message.edited_at) {
    item.dataset.editedAt = message.edited_at;
    markEdited(item);
  }
  item.append(el("ul", { className: "reactions", attrs: { "aria-label": "Reactions" } }));
  if (message.reactions?.length) renderReactions(item, message.reactions, me);
  item.append(
    el("button", {
      text: "⋯",
      className: "message-actions",
      attrs: { type: "button", "aria-haspopup": "menu", "aria-expanded": "false", "aria-label": "Message actions" },
    }),
  );
  return item;
}

// A reply's quote of the message it answers, filled in by the page (app.js, fillQuotes).
function quoteButton(id) {
  return el("button", {
    className: "quote",
    text: "Earlier message",
    attrs: { type: "button", "data-reply-to": String(id), title: "Show the message this answers" },
  });
}

// A text message's words, with `@me` marked (case does not matter; a longer name that
// starts with mine is not a mention of me).
export function setText(item, text, me) {
  const line = item.querySelector(".text");
  item.dataset.text = text;
  if (!me) return line.replaceChildren(text);
  const parts = text.split(mentionPattern(me));
  // split with one capturing group: [text, mention, text, mention, ...]
  line.replaceChildren(...parts.map((part, i) => (i % 2 ? el("mark", { className: "mention", text: part }) : part)));
  item.classList.toggle("mentions-me", parts.length > 1);
}

export function mentionPattern(name) {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(@${escaped})(?![\\p{L}\\p{N}_])`, "giu");
}

export function markEdited(item) {
  if (item.querySelector(".edited")) return;
  item.querySelector(".meta").append(" ", el("span", { className: "edited", text: "edited" }));
}

// The whole reaction state of a message ([{emoji, names}]): one chip each, pressed when
// the reader is among the names; who reacted is in its title and, on hover or focus, in
// a tooltip beside it (each name isolated, so that names in two directions keep their order).
// Chips are updated in place: the log (role=log) reads out every node added to it, so a
// refresh of unchanged reactions adds none, and a chip being toggled keeps its focus.
export function renderReactions(item, reactions, me) {
  const list = item.querySelector(".reactions");
  const shown = new Map([...list.children].map((li) => [li.firstChild.dataset.emoji, li]));
  const at = [...list.children].findIndex((li) => li.contains(document.activeElement));
  const focused = at >= 0 ? list.children[at].firstChild : null;
  const wanted = reactions.map((reaction) => showReaction(shown.get(reaction.emoji) ?? reactionItem(), reaction, me));
  for (const [i, li] of wanted.entries()) if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
  while (list.children.length > wanted.length) list.lastChild.remove();
  // A focused chip that moved keeps the focus; one that went (toggled off) gives it to
  // the chip now in its place, else the one before, else the message's menu button.
  if (focused && document.activeElement !== focused) {
    const near = focused.isConnected ? focused : list.children[Math.min(at, list.children.length - 1)]?.firstChild;
    (near ?? item.querySelector(".message-actions"))?.focus();
  }
}

function reactionItem() {
  const chip = el("button", { className: "reaction", attrs: { type: "button" } });
  return el("li", {}, [chip, el("span", { className: "reaction-names", attrs: { "aria-hidden": "true" } })]);
}

function showReaction(li, { emoji, names }, me) {
  const [chip, tooltip] = li.children;
  const who = names.join(", ");
  const text = `${emoji} ${names.length}`;
  if (chip.textContent !== text) chip.textContent = text;
  if (chip.dataset.names !== who) {
    const isolatedNames = names.map((name) => el("bdi", { text: name }));
    tooltip.replaceChildren(...isolatedNames.flatMap((name, i) => (i ? [", ", name] : [name])));
  }
  const attrs = {
    "aria-pressed": String(names.includes(me)),
    "data-emoji": emoji,
    "data-names": who,
    title: who,
    "aria-label": `${emoji} ${names.length}: ${who}`,
  };
  for (const [name, value] of Object.entries(attrs)) chip.setAttribute(name, value);
  return li;
}

// A message of ours the server has not sent back yet: no id, and a note for the time.
// Hidden from screen readers: the log reads out the stored copy that replaces it, and
// would otherwise read the message twice (app.js shows one left refused).
export function pendingItem(sender, text) {
  const head = el("p", { className: "meta" }, [
    el("bdi", { className: "sender", text: sender }),
    " ",
    el("span", { className: "note", text: "sending…" }),
  ]);
  const line = el("p", { className: "text", text, attrs: { dir: "auto" } });
  return el("li", { className: "message mine pending", attrs: { "aria-hidden": "true" } }, [head, line]);
}

// Where messages are not on the page, missed or taken off (app.js, "Gaps"): what that
// means, and a real button that brings them. Not an li.message: nothing reads it as one.
export function gapItem(note) {
  const button = el("button", { text: "Show them", className: "gap-show", attrs: { type: "button" } });
  return el("li", { className: "gap" }, [el("span", { className: "gap-note", text: note }), " ", button]);
}

// Messages stay in id order even though decryption finishes out of order; pending ones
// (no id yet) stay below them all.
export function insertById(list, item) {
  const id = Number(item.dataset.id);
  // The unread divider carries a fractional id: it sorts in like a message.
  for (const other of list.children) {
    if (!other.dataset.id || Number(other.dataset.id) > id) {
      list.insertBefore(item, other);
      return;
    }
  }
  list.append(item);
}

// True when `item` is where insertById would put it.
export function inOrder(item) {
  const id = Number(item.dataset.id);
  const [before, after] = [item.previousElementSibling, item.nextElementSibling];
  return (!before || Number(before.dataset.id) <= id) && (!after || !after.dataset.id || Number(after.dataset.id) > id);
}

export function renderMembers(list, names, me) {
  list.replaceChildren(
    ...names.map((name) =>
      el("li", { attrs: { "data-name": name } }, [el("bdi", { text: name }), ...(name === me ? [" (you)"] : [])]),
    ),
  );
}
