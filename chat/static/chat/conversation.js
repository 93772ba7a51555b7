// What people do to messages (PROTOCOL.md, "Conversations"): the message menu (Reply,
// Edit, Delete, React), the reaction picker and chips, the delete confirmation, the
// composer's reply or edit line, "is typing", and @mentions. The page's state and the
// socket stay in app.js, which hands in what this needs as `deps`.

import { describedBy, el, isolated, isolatedText } from "./render.js";

const $ = (id) => document.getElementById(id);
const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];
const TYPING_EVERY_MS = 3200; // the server forwards one Typing a connection per 3 s
const TYPING_SHOWN_MS = 6000; // and clients show it for 6 s
const QUOTE_CHARS = 80;
// React takes one RGI emoji (docs/protocol-notes.md, "Reactions"), as the server checks it.
const ONE_EMOJI = /^\p{RGI_Emoji}$/v;

// What the picker's field sends: one emoji as typed, or one typed without its emoji
// presentation selector (a bare "❤", as many keyboards give it) with it ("❤️"); null
// for anything else, which the server would refuse.
export function asEmoji(typed) {
  for (const emoji of [typed, `${typed}\uFE0F`]) if (ONE_EMOJI.test(emoji)) return emoji;
  return null;
}

// "Alice: the start of what she wrote…" (a reply's quote, the reply line, the dialog).
export function quoteOf(item) {
  if (!item) return "Deleted message";
  return item.dataset.sender ? `${item.dataset.sender}: ${startOf(item)}` : startOf(item);
}

// The same as nodes to show, the name and the text each isolated (<bdi>): a name or a
// text written right to left then keeps its place ("דוד: שלום" stays name first).
export function quoteNodes(item) {
  if (!item) return [quoteOf(null)];
  const start = el("bdi", { text: startOf(item) });
  return item.dataset.sender ? [el("bdi", { text: item.dataset.sender }), ": ", start] : [start];
}

function startOf(item) {
  const text = item.dataset.text ?? item.querySelector(".text")?.textContent ?? "";
  return text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text;
}

// deps: {send(message, context), sendTyping(), rights(item) -> {edit, delete},
// members() -> names, me() -> name, react(item, emoji, on), remove(item)}
export function setUpConversation(deps) {
  const box = $("message");
  const menu = $("message-menu");
  const picker = $("emoji-picker");
  let target = null; // {item, button}: the message the menu or picker is open for
  let composing = null; // {kind: "reply" | "edit", id}
  let saving = false; // an edit sent and not answered yet: it stays in the box until it is
  // An edit borrows the box: the draft it found there ({text, reply, context}: the reply
  // that draft was, and its reply line) is set aside, and comes back when the edit is
  // saved, cancelled, or left for a reply.
  let aside = null;

  // --- The message menu and the picker: one of each, placed by the message's button.

  function place(popup, button) {
    popup.hidden = false;
    const anchor = button.getBoundingClientRect();
    const width = popup.offsetWidth;
    const below = anchor.bottom + popup.offsetHeight + 4 <= window.innerHeight;
    popup.style.left = `${Math.max(4, Math.min(anchor.right - width, window.innerWidth - width - 4))}px`;
    popup.style.top = `${below ? anchor.bottom + 4 : Math.max(4, anchor.top - popup.offsetHeight - 4)}px`;
  }

  // `refocus`: the focus, when in the popup, goes back to the message's button (not
  // scrolled to: it may be out of sight, the list scrolled away from it).
  function closePopups({ refocus = false } = {}) {
    const was = target;
    if (menu.hidden && picker.hidden) return;
    const focused = menu.contains(document.activeElement) || picker.contains(document.activeElement);
    menu.hidden = true;
    picker.hidden = true;
    target = null;
    was?.button.setAttribute("aria-expanded", "false");
    if (refocus && focused && was?.button.isConnected) was.button.focus({ preventScroll: true });
  }

  function openMenu(item, button) {
    closePopups();
    const rights = deps.rights(item);
    menu.querySelector("[data-action=edit]").hidden = !rights.edit;
    menu.querySelector("[data-action=delete]").hidden = !rights.delete;
    target = { item, button };
    button.setAttribute("aria-expanded", "true");
    place(menu, button);
    menuItems()[0].focus();
  }

  function menuItems() {
    return [...menu.querySelectorAll("[role=menuitem]")].filter((node) => !node.hidden);
  }

  menu.addEventListener("keydown", (event) => {
    const items = menuItems();
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      closePopups({ refocus: true });
    } else if (event.key === "Tab") {
      // The menu is at the end of the page: Tab would go on from there, not from the message.
      event.preventDefault();
      closePopups({ refocus: true });
    }
  });

  menu.addEventListener("click", (event) => {
    const action = event.target.closest("[role=menuitem]")?.dataset.action;
    if (!action || !target) return;
    const { item, button } = target;
    closePopups();
    if (action === "reply") startComposing("reply", item);
    else if (action === "edit") startComposing("edit", item);
    else if (action === "delete") confirmDelete(item, button);
    else if (action === "react") openPicker(item, button);
  });

  for (const emoji of COMMON_EMOJI) {
    const button = el("button", { text: emoji, attrs: { type: "button", "data-emoji": emoji } });
    $("emoji-common").append(button);
  }

  function openPicker(item, button) {
    closePopups();
    target = { item, button };
    button.setAttribute("aria-expanded", "true");
    $("emoji-any").value = "";
    emojiProblem("");
    place(picker, button);
    picker.querySelector("button").focus();
  }

  function pick(emoji) {
    const item = target?.item;
    closePopups({ refocus: true });
    if (item && emoji) deps.react(item, emoji, true);
  }

  $("emoji-common").addEventListener("click", (event) => pick(event.target.closest("[data-emoji]")?.dataset.emoji));
  // Not one emoji: the picker stays open with what was typed, and says why.
  $("emoji-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("emoji-any").value.trim();
    const emoji = asEmoji(typed);
    if (emoji || !typed) pick(emoji);
    else emojiProblem("Type one emoji, such as 👍 or ❤️.");
  });
  $("emoji-any").addEventListener("input", () => emojiProblem(""));

  function emojiProblem(text) {
    const field = $("emoji-any");
    $("emoji-any-error").textContent = text;
    if (text) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
    describedBy(field, "emoji-any-error", Boolean(text));
    if (text) field.focus();
  }
  // Escape, or Tab past either end of the picker (at the end of the page, as the menu).
  picker.addEventListener("keydown", (event) => {
    const controls = picker.querySelectorAll("button, input");
    const edge = event.shiftKey ? controls[0] : controls[controls.length - 1];
    if (event.key === "Escape" || (event.key === "Tab" && document.activeElement === edge)) {
      event.preventDefault();
      closePopups({ refocus: true });
    }
  });

  document.addEventListener("click", (event) => {
    if (!event.target.closest("#message-menu, #emoji-picker, .message-actions")) closePopups();
  });
  window.addEventListener("resize", () => closePopups());

  // The popups are fixed in the window: while the list (or the page) scrolls they follow
  // their message's button, and close once it is out of sight, so that Reply or React
  // never lands on another message; the focus then goes back to that button, not to the
  // page's body. (Scroll events do not bubble: caught on the way down.)
  document.addEventListener(
    "scroll",
    () => {
      if (!target) return;
      if (inSight(target.button)) place(menu.hidden ? picker : menu, target.button);
      else closePopups({ refocus: true });
    },
    { capture: true, passive: true },
  );

  function inSight(button) {
    if (!button.isConnected) return false;
    const anchor = button.getBoundingClientRect();
    const list = $("messages").getBoundingClientRect();
    return anchor.bottom > Math.max(list.top, 0) && anchor.top < Math.min(list.bottom, window.innerHeight);
  }

  // Focus leaving a popup closes it (Tab past either end; a click elsewhere is handled
  // above), once it has landed: not on its own button, whose click toggles the menu, and
  // not when the window loses focus (document.activeElement stays where it was).
  for (const popup of [menu, picker]) {
    popup.tabIndex = -1; // a click on its padding or a label focuses the popup, not the body
    popup.addEventListener("focusout", () =>
      setTimeout(() => {
        const now = document.activeElement;
        if (!popup.hidden && !popup.contains(now) && now !== target?.button) closePopups();
      }),
    );
  }

  $("messages").addEventListener("click", (event) => {
    const actions = event.target.closest(".message-actions");
    if (actions) {
      const open = target?.button === actions;
      closePopups();
      if (!open) openMenu(actions.closest("li.message"), actions);
      return;
    }
    const chip = event.target.closest("button.reaction");
    if (chip) deps.react(chip.closest("li.message"), chip.dataset.emoji, chip.getAttribute("aria-pressed") !== "true");
  });

  // --- Delete, after a confirmation in the page (never window.confirm).

  function confirmDelete(item, button) {
    const dialog = $("confirm-delete");
    $("confirm-delete-quote").replaceChildren(...quoteNodes(item));
    dialog.returnValue = "";
    // Its button has the focus until the message goes (app.js hands it on then).
    dialog.onclose = () => {
      if (dialog.returnValue === "delete" && item.isConnected) deps.remove(item);
      (button.isConnected ? button : $("messages")).focus();
    };
    dialog.showModal();
    $("confirm-delete-yes").focus();
  }

  // --- The composer's reply or edit line.

  function startComposing(kind, item) {
    if (saving) return; // the edit being saved holds the box until it is answered
    // A reply (or another edit) ends an edit first: the reply takes the draft, never the
    // edited text.
    if (composing?.kind === "edit") leaveEdit();
    const line = $("composer-context-text");
    if (kind === "edit") {
      aside = { text: box.value, reply: composing, context: composing ? [...line.childNodes] : [] };
      box.value = item.dataset.text ?? "";
    }
    composing = { kind, id: Number(item.dataset.id) };
    if (kind === "reply") line.replaceChildren("Replying to ", ...quoteNodes(item));
    else line.textContent = "Editing your message";
    showContext(true);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function stopComposing() {
    if (saving) return;
    if (composing?.kind === "edit") return leaveEdit();
    composing = null;
    showContext(false);
  }

  // The reply or edit line, part of the message box's description while it shows.
  function showContext(shown) {
    $("composer-context").hidden = !shown;
    describedBy(box, "composer-context-text", shown);
  }

  // The edit is over: the draft set aside comes back, a reply still if it was one.
  function leaveEdit() {
    box.value = aside?.text ?? "";
    composing = aside?.reply ?? null;
    $("composer-context-text").replaceChildren(...(aside?.context ?? []));
    showContext(Boolean(composing));
    aside = null;
  }

  $("composer-cancel").addEventListener("click", () => {
    stopComposing();
    box.focus();
  });

  // --- Who is typing.

  const typists = new Map(); // name -> the timer that forgets them

  function showTyping() {
    const names = [...typists.keys()].map(isolated);
    let line = [];
    if (names.length === 1) line = [names[0], " is typing…"];
    else if (names.length === 2) line = [names[0], " and ", names[1], " are typing…"];
    else if (names.length === 3) line = [names[0], ", ", names[1], " and ", names[2], " are typing…"];
    else if (names.length > 3) line = [names[0], ", ", names[1], ` and ${names.length - 2} others are typing…`];
    // The line is a live region: each Typing (every 3 s) would read it out again.
    const text = line.map((part) => (typeof part === "string" ? part : part.textContent)).join("");
    if (text !== $("typing").textContent) $("typing").replaceChildren(...line);
  }

  function notTyping(name) {
    if (!typists.has(name)) return;
    clearTimeout(typists.get(name));
    typists.delete(name);
    showTyping();
  }

  // Typing goes out at most once per TYPING_EVERY_MS; typing on past a message just sent
  // goes out when that time is up, so the others see it again.
  let typedAt = -Infinity;
  let typingTimer = null;
  function typed() {
    if (!box.value.trim() || composing?.kind === "edit") return;
    const wait = typedAt + TYPING_EVERY_MS - performance.now();
    if (wait > 0) {
      typingTimer ??= setTimeout(() => {
        typingTimer = null;
        typed();
      }, wait);
      return;
    }
    typedAt = performance.now();
    deps.sendTyping();
  }

  box.addEventListener("input", () => {
    updateMentions();
    typed();
  });

  // --- @mentions: completing a present member's name while typing.

  const mentionList = $("mention-list");
  let mention = null; // {start, options, index}: the "@prefix" being typed

  function updateMentions() {
    const before = box.value.slice(0, box.selectionStart);
    const typed = /(?:^|\s)@([^\s@]{0,50})$/u.exec(before);
    const prefix = typed?.[1].toLocaleLowerCase();
    const options = typed
      ? deps
          .members()
          .filter((name) => name !== deps.me() && name.toLocaleLowerCase().startsWith(prefix))
          .slice(0, 8)
      : [];
    // Nothing to offer, or the one name is typed whole already (Enter then sends).
    if (!options.length || (options.length === 1 && options[0].toLocaleLowerCase() === prefix)) {
      return closeMentions();
    }
    mention = { start: before.length - typed[1].length - 1, options, index: 0 };
    mentionList.replaceChildren(
      ...options.map((name, i) =>
        el("li", { attrs: { role: "option", id: `mention-${i}`, "data-name": name } }, [isolated(name)]),
      ),
    );
    mentionList.hidden = false;
    selectMention(0);
  }

  function selectMention(index) {
    mention.index = (index + mention.options.length) % mention.options.length;
    for (const [i, option] of [...mentionList.children].entries()) {
      option.setAttribute("aria-selected", String(i === mention.index));
    }
    box.setAttribute("aria-activedescendant", `mention-${mention.index}`);
  }

  function closeMentions() {
    mention = null;
    mentionList.hidden = true;
    mentionList.replaceChildren();
    box.removeAttribute("aria-activedescendant");
  }

  function complete(name) {
    const end = box.selectionStart;
    const inserted = `@${name} `;
    box.setRangeText(inserted, mention.start, end, "end");
    closeMentions();
    box.focus();
  }

  // Keep the box's focus while an option is clicked.
  mentionList.addEventListener("mousedown", (event) => event.preventDefault());
  mentionList.addEventListener("click", (event) => {
    const name = event.target.closest("[data-name]")?.dataset.name;
    if (name && mention) complete(name);
  });
  box.addEventListener("blur", () => setTimeout(() => document.activeElement !== box && closeMentions(), 0));
  box.addEventListener("click", updateMentions);

  // The message box's keys that are not "send": true when handled here.
  function composerKey(event) {
    if (mention) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        selectMention(mention.index + (event.key === "ArrowDown" ? 1 : -1));
        return true;
      }
      if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        complete(mention.options[mention.index]);
        return true;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        closeMentions();
        return true;
      }
    }
    if (saving && (event.key === "Enter" || event.key === "Escape")) {
      event.preventDefault();
      return true;
    }
    if (event.key === "Escape" && composing) {
      event.preventDefault();
      stopComposing();
      return true;
    }
    if (event.key === "ArrowUp" && !box.value && !composing) {
      const item = deps.lastEditable();
      if (!item) return false;
      event.preventDefault();
      startComposing("edit", item);
      return true;
    }
    return false;
  }

  // --- Mention notifications: permission asked on a click, never on load.

  const notify = $("notify");
  function showNotifyButton() {
    notify.hidden = !("Notification" in window) || Notification.permission !== "default";
  }
  notify.addEventListener("click", async () => {
    await Notification.requestPermission();
    showNotifyButton();
  });
  showNotifyButton();

  return {
    composerKey,
    // {kind, id} of the reply or edit being written, or null.
    composing: () => composing,
    stopComposing,
    // An edit was sent: the box keeps it, read-only, until the server answers. Then
    // `editDone("stored")` empties the box; "refused" gives the edit back to change or
    // save again; "gone" (its message was deleted) leaves its text in the box as a draft.
    editSent() {
      saving = true;
      box.readOnly = true;
      $("composer-context-text").textContent = "Saving your edit…";
    },
    editDone(result) {
      if (!saving) return;
      saving = false;
      box.readOnly = false;
      if (result === "stored") return stopComposing();
      if (result === "gone") {
        // Its message was deleted: the edit stays in the box as a draft, after the draft
        // that was set aside, so nothing typed is lost.
        const edit = box.value;
        leaveEdit();
        box.value = [box.value, edit].filter(Boolean).join("\n");
      } else {
        $("composer-context-text").textContent = "Editing your message";
      }
      box.focus();
    },
    // A message was deleted or edited: a reply or edit of it is no longer being written.
    forget(id) {
      if (aside?.reply?.id === id) Object.assign(aside, { reply: null, context: [] });
      if (composing?.id === id) stopComposing();
      if (target && Number(target.item.dataset.id) === id) closePopups({ refocus: true });
    },
    typing(name) {
      if (name === deps.me()) return;
      clearTimeout(typists.get(name));
      typists.set(
        name,
        setTimeout(() => notTyping(name), TYPING_SHOWN_MS),
      );
      showTyping();
    },
    notTyping,
    notifyMention(sender, text, roomName) {
      if (document.visibilityState !== "hidden" || !("Notification" in window)) return;
      if (Notification.permission !== "granted") return;
      const title = `${isolatedText(sender)} mentioned you in ${isolatedText(roomName)}`;
      new Notification(title, { body: text.slice(0, 200) });
    },
    reset() {
      saving = false;
      box.readOnly = false;
      closePopups();
      stopComposing(); // an edit gives the box its draft back; the draft's reply goes with the room
      composing = null;
      showContext(false);
      closeMentions();
      for (const name of [...typists.keys()]) notTyping(name);
      typedAt = -Infinity;
      clearTimeout(typingTimer);
      typingTimer = null;
    },
  };
}
