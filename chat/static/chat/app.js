// The browser app: lobby (create or join), then the room. Wire format: PROTOCOL.md.

import { decrypt, encrypt, importKey } from "./crypto.js";
import { contextOf, errorPlace, humanError } from "./errors.js";
import { setUpFiles } from "./files.js";
import { INCOMPLETE_LINK, secretFromFragment } from "./sealed.js";
import { insertById, messageItem, parseFileMessage, pendingItem, renderMembers } from "./render.js";
import { Connection } from "./socket.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
// Upload limits and types (files/context_processors.py).
const filesConfig = JSON.parse(document.getElementById("files-config").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  room: null, // {info, key, name, joinKey, password, ownerToken}
  seen: new Set(),
  maxId: null,
  members: [],
  pending: null, // "create" | "join" while the lobby waits for its answer
  lastSent: null, // what the last frame was, for errors any request could cause
  rejoining: false,
  rejoinAttempts: 0,
  // Our chat messages not yet sent back by the server, by content (the random nonce makes
  // each ciphertext unique, and chatclient matches the same way): {text, item, sent}, in
  // the order typed. `sent`: on the current socket.
  outbox: new Map(),
  catchingUp: false, // a rejoin's History is coming; the outbox waits for it
  queued: null, // a lobby request waiting for the socket to open
};

const connection = new Connection({ onOpen, onMessage, onDrop });
const NOT_SENT = "not sent yet, reconnecting…";

function send(message, context) {
  state.lastSent = context;
  return connection.send(message);
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(id, text) {
  $(id).textContent = text;
}

function clearErrors(container) {
  for (const node of container.querySelectorAll(".error")) node.textContent = "";
}

// --- Lobby -------------------------------------------------------------------------

function lobbyRequest(context, message, formId) {
  state.pending = context;
  $(formId).querySelector("button[type=submit]").disabled = true;
  // Between sockets (just after a room closed, say) the request waits for the next one.
  if (!send(message, context)) {
    state.queued = { message, context };
    setStatus("Connecting to the server…");
  }
}

function required(id, text) {
  if ($(id).value.trim()) return true;
  showError(`${id}-error`, text);
  $(id).focus();
  return false;
}

$("create-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearErrors($("lobby"));
  if (!required("create-name", "Enter a room name.") || !required("create-owner", "Enter your name.")) return;
  const password = $("create-password").value;
  state.draft = { name: $("create-owner").value.trim(), password };
  lobbyRequest(
    "create",
    {
      type: "CreateRoom",
      name: $("create-name").value,
      description: $("create-description").value,
      password: password || null,
      owner_name: $("create-owner").value,
    },
    "create-form",
  );
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearErrors($("lobby"));
  if (!required("join-key", "Enter the room's join key.") || !required("join-name", "Enter your name.")) return;
  const password = $("join-password").value;
  const joinKey = $("join-key").value.trim();
  state.draft = { name: $("join-name").value.trim(), password, joinKey };
  lobbyRequest(
    "join",
    { type: "JoinRoom", join_key: joinKey, password: password || null, name: $("join-name").value },
    "join-form",
  );
});

function endPending() {
  state.pending = null;
  for (const button of document.querySelectorAll("#lobby button[type=submit]")) button.disabled = false;
}

// --- Room --------------------------------------------------------------------------

async function enterRoom(message, name, ownerToken) {
  endPending();
  let key;
  try {
    key = await importKey(message.encryption_key);
  } catch (error) {
    showError("lobby-error", error.message);
    send({ type: "LeaveRoom" }, "room");
    return;
  }
  const info = message.room_info;
  state.room = { info, key, name, joinKey: info.join_key, password: state.draft?.password ?? "", ownerToken };
  state.seen = new Set();
  state.maxId = null;
  state.outbox = new Map();
  $("messages").replaceChildren();
  $("room-name").textContent = info.name;
  $("room-description").textContent = info.description;
  document.title = `${info.name} · Encrypted chat rooms`;
  setMembers(message.participants ?? [name]);
  $("share").hidden = !ownerToken;
  if (ownerToken) $("share-link").value = `${location.origin}/rooms/${encodeURIComponent(info.join_key)}/`;
  $("copy-status").textContent = "";
  clearErrors($("room"));
  $("lobby").hidden = true;
  $("room").hidden = false;
  setStatus(`In room ${info.name} as ${name}.`);
  $("message").focus();
}

function exitRoom(reason = "") {
  state.room = null;
  state.rejoining = false;
  state.outbox = new Map();
  files.reset();
  $("room").hidden = true;
  $("lobby").hidden = false;
  document.title = "Encrypted chat rooms";
  showError("lobby-error", reason);
  setStatus(reason ? "" : "You left the room.");
  (config.join_key ? $("join-name") : $("create-name")).focus();
}

function setMembers(names) {
  state.members = [...names];
  renderMembers($("members"), state.members, state.room?.name);
  $("members-heading").textContent = `Members (${state.members.length})`;
}

async function receiveMessage(message) {
  const room = state.room;
  // One of ours, live or in a rejoin's History: stored, so no longer pending.
  const mine = state.outbox.get(message.content);
  state.outbox.delete(message.content);
  if (!room || state.seen.has(message.id)) return mine?.item.remove(); // History and live may overlap.
  state.seen.add(message.id);
  state.maxId = Math.max(state.maxId ?? message.id, message.id);
  const file = parseFileMessage(message.content);
  let body;
  if (file) {
    body = { file };
  } else {
    try {
      body = { text: await decrypt(room.key, message.content) };
    } catch {
      body = { undecryptable: true };
    }
  }
  if (state.room !== room) return;
  const item = messageItem(message, body, { mine: message.sender === room.name });
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  mine?.item.remove();
  insertById(list, item);
  if (file) files.decorate(item, file, Boolean(room.ownerToken));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function sendChat() {
  const box = $("message");
  const text = box.value;
  showError("message-error", "");
  const room = state.room;
  if (!text.trim() || !room) return;
  const content = await encrypt(room.key, text);
  if (state.room !== room) return;
  if (!connection.isOpen || state.rejoining) {
    showError("message-error", "Not connected. Your message is kept; send it again once reconnected.");
    return;
  }
  // Shown as pending until the server sends it back; behind messages waiting for a
  // rejoin's History it waits too, so they keep their order.
  const entry = { text, item: pendingItem(room.name, text), sent: false };
  state.outbox.set(content, entry);
  box.value = "";
  const list = $("messages");
  list.append(entry.item);
  list.scrollTop = list.scrollHeight;
  if (!state.catchingUp) sendPending(content, entry);
}

function sendPending(content, entry) {
  entry.sent = send({ type: "ChatMessage", content }, "chat");
  entry.item.querySelector(".note").textContent = entry.sent ? "sending…" : NOT_SENT;
}

// After a rejoin, once its History is in: what the server did not store is sent again.
function resendPending() {
  state.catchingUp = false;
  for (const [content, entry] of state.outbox) if (!entry.sent) sendPending(content, entry);
}

// An Error refusing a chat message carries no id: as the server answers frames in order,
// it is taken to be about the last one sent, which goes back into an empty box.
function chatRefused() {
  const [content, entry] = [...state.outbox].findLast(([, entry]) => entry.sent) ?? [];
  if (!entry) return;
  state.outbox.delete(content);
  entry.item.remove();
  if (!$("message").value) $("message").value = entry.text;
}

$("message-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sendChat();
});

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendChat();
  }
});

$("leave").addEventListener("click", () => {
  send({ type: "LeaveRoom" }, "room");
  exitRoom();
});

$("copy-link").addEventListener("click", async () => {
  const link = $("share-link");
  try {
    await navigator.clipboard.writeText(link.value);
    $("copy-status").textContent = "Link copied.";
  } catch {
    link.select();
    $("copy-status").textContent = "Link selected: press Ctrl+C (or ⌘C) to copy it.";
  }
});

const files = setUpFiles({ config: filesConfig, send, connection, showError });

// --- The socket ----------------------------------------------------------------------

function rejoin() {
  const room = state.room;
  state.rejoining = true;
  send(
    {
      type: "JoinRoom",
      join_key: room.joinKey,
      password: room.password || null,
      name: room.name,
      since: state.maxId,
      owner_token: room.ownerToken ?? null,
    },
    "rejoin",
  );
}

function onOpen() {
  if (state.room) {
    setStatus("Reconnected. Catching up…");
    rejoin();
  } else {
    setStatus("");
  }
  if (state.queued) send(state.queued.message, state.queued.context);
  state.queued = null;
}

function onDrop(event, wait) {
  if (state.pending) {
    showError(`${state.pending}-error`, "No connection to the server. Try again in a moment.");
    state.queued = null;
    endPending();
  }
  files.connectionLost(Boolean(state.room?.ownerToken));
  // Perhaps never stored: not shown as sent, and sent again after the rejoin (resendPending).
  state.catchingUp = false;
  for (const entry of state.outbox.values()) {
    entry.sent = false;
    entry.item.querySelector(".note").textContent = NOT_SENT;
  }
  if (state.room) setStatus(`Connection lost. Reconnecting in ${Math.ceil(wait / 1000)} s…`);
}

function rejoinFailed(error) {
  // A dropped connection may still hold our name for a moment: keep trying.
  if (error.code === "name_taken" || error.code === "rate_limited" || error.code === "server_error") {
    state.rejoinAttempts += 1;
    const wait = Math.min(15000, 1000 * 2 ** state.rejoinAttempts);
    setStatus(`Rejoining the room: ${humanError(error)} Retrying in ${Math.ceil(wait / 1000)} s…`);
    setTimeout(() => state.room && connection.isOpen && rejoin(), wait);
    return;
  }
  exitRoom(humanError(error));
}

function onError(error) {
  const context = contextOf(error, state.lastSent);
  if (state.pending && (context === "create" || context === "join" || context === state.pending)) {
    const pending = state.pending;
    endPending();
    showError(errorPlace(pending, error), humanError(error));
    return;
  }
  if (state.rejoining && state.room && (context === "join" || context === "rejoin")) return rejoinFailed(error);
  if (context === "room") return exitRoom(humanError(error));
  if (files.handleError(error, context)) return;
  if (context === "chat") chatRefused();
  if (context === "members" && state.catchingUp) resendPending(); // no Members is coming
  showError(state.room ? errorPlace(context, error) : "lobby-error", humanError(error));
}

const HANDLERS = {
  RoomCreated: (m) => enterRoom(m, m.room_info.owner, m.owner_token),
  RoomJoined: (m) => {
    if (state.room && state.rejoining) {
      state.rejoining = false;
      state.rejoinAttempts = 0;
      setMembers(m.participants);
      setStatus(`Reconnected to ${m.room_info.name}.`);
      // The History, if any, comes before the answer to this GetMembers (frames are
      // answered in order): the pending messages it does not hold are sent again then.
      if (state.outbox.size) {
        state.catchingUp = true;
        send({ type: "GetMembers" }, "members");
      }
      return;
    }
    return enterRoom(m, m.participants.at(-1) ?? state.draft.name, null);
  },
  History: async (m) => {
    for (const message of m.messages) await receiveMessage(message);
  },
  ChatMessage: receiveMessage,
  ParticipantJoined: (m) => state.room && !state.members.includes(m.name) && setMembers([...state.members, m.name]),
  ParticipantLeft: (m) => state.room && setMembers(state.members.filter((name) => name !== m.name)),
  Members: (m) => {
    if (!state.room) return;
    setMembers(m.participants);
    if (state.catchingUp) resendPending();
  },
  // A moderator deleted a message (docs/protocol-notes.md): it goes from the page; its
  // id stays seen, so History after a reconnect cannot bring it back.
  MessageDeleted: (m) => {
    state.seen.add(m.id);
    document.querySelector(`#messages li[data-id="${CSS.escape(String(m.id))}"]`)?.remove();
  },
  FileUploaded: (m) => files.uploaded(m.metadata),
  FileContent: (m) => files.content(m.metadata, m.content),
  FileDeleted: (m) => files.deleted(m.file_id),
  Error: onError,
};

// One frame at a time, in order: entering a room awaits the key import, and the
// History right behind RoomJoined must wait for it.
let inbox = Promise.resolve();

function onMessage(message) {
  inbox = inbox.then(() => HANDLERS[message.type]?.(message)).catch((error) => console.error(error));
}

// A share link asks only for a name, and for a password when the room has one.
if (config.join_key) {
  $("join-password-field").hidden = config.has_password === false;
  if (config.has_password === null) showError("join-key-error", humanError({ code: "room_not_found" }));
  // A fragment is a sealed room's secret (PROTOCOL.md, "Sealed rooms"): one cut short is told.
  if (location.hash && !secretFromFragment(location.hash)) showError("join-key-error", INCOMPLETE_LINK);
  $("join-name").focus();
}
connection.open();
