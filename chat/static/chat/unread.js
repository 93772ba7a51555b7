// Where the person stopped reading: the last message id read in each room (kept in this
// browser's localStorage), a "New messages" divider before the first one after it, the
// count of new messages in the tab's title while the tab is hidden, and a button back to
// the latest message when the list is scrolled up.

import { el, insertById, isolatedText } from "./render.js";

const $ = (id) => document.getElementById(id);
const NEAR_BOTTOM_PX = 40;

function storedRead(roomId) {
  try {
    const value = Number(localStorage.getItem(`chat:read:${roomId}`));
    return Number.isSafeInteger(value) && value > 0 ? value : null;
  } catch {
    return null; // storage refused (private mode, a sandbox): nothing is remembered
  }
}

function storeRead(roomId, id) {
  try {
    localStorage.setItem(`chat:read:${roomId}`, String(id));
  } catch {
    // as above
  }
}

export function atBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
}

export function setUpUnread() {
  const list = $("messages");
  const jump = $("jump-latest");
  let room = null; // {id, title}
  let readUpTo = null; // the newest message id read, as stored
  let unreadAfter = null; // messages of others past this id get the divider before them
  let newest = null; // the newest message id on the page
  let hiddenCount = 0;

  function showTitle() {
    if (!room) return;
    document.title = hiddenCount ? `(${hiddenCount}) ${room.title}` : room.title;
  }

  // Everything down to the bottom is read when the tab is visible and the list is there.
  function read() {
    if (!room || document.visibilityState === "hidden") return;
    if (!atBottom(list)) return;
    jump.hidden = true;
    if (newest !== null && newest > (readUpTo ?? 0)) {
      readUpTo = newest;
      storeRead(room.id, newest);
    }
  }

  function placeDivider(id) {
    let divider = list.querySelector(".unread-divider");
    if (divider && Number(divider.dataset.id) < id) return;
    divider?.remove();
    divider = el("li", { className: "unread-divider", text: "New messages", attrs: { "data-id": String(id - 0.5) } });
    insertById(list, divider);
  }

  list.addEventListener("scroll", () => {
    jump.hidden = atBottom(list);
    read();
  });
  jump.addEventListener("click", () => {
    list.scrollTop = list.scrollHeight;
    jump.hidden = true;
    read();
    list.focus();
  });
  document.addEventListener("visibilitychange", () => {
    if (!room) return;
    if (document.visibilityState === "hidden") {
      // What comes from now on is unread: the divider moves to the first of it.
      list.querySelector(".unread-divider")?.remove();
      unreadAfter = readUpTo ?? newest ?? 0;
      return;
    }
    hiddenCount = 0;
    showTitle();
    read();
  });

  return {
    enter(info) {
      room = { id: info.id, title: `${isolatedText(info.name)} · Encrypted chat rooms` };
      readUpTo = storedRead(info.id);
      unreadAfter = readUpTo; // the first visit has nothing unread
      newest = null;
      hiddenCount = 0;
      jump.hidden = true;
      showTitle();
    },
    // A message is on the page. `live`: it came just now (not in a History); `wasAtBottom`:
    // the list showed its end when it came.
    added(item, { mine, live, wasAtBottom }) {
      if (!room) return;
      const hidden = document.visibilityState === "hidden";
      const unseen = !mine && (!live || hidden || !wasAtBottom);
      const id = Number(item.dataset.id);
      newest = Math.max(newest ?? id, id);
      if (unseen && unreadAfter !== null && id > unreadAfter) placeDivider(id);
      if (live && !mine && hidden) {
        hiddenCount += 1;
        showTitle();
      }
      if (live && !atBottom(list)) jump.hidden = false;
      read();
    },
    read,
    leave() {
      room = null;
      hiddenCount = 0;
      jump.hidden = true;
    },
  };
}
