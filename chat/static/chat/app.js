// The browser app: lobby (create or join), then the room. Wire format: PROTOCOL.md.

import { decrypt, encrypt, importKey, needsSecureContext } from "./crypto.js";
import { contextOf, errorPlace, humanError } from "./errors.js";
import { setUpFiles } from "./files.js";
import {
  deriveKeys,
  fragmentOf,
  INCOMPLETE_LINK,
  isCard,
  newSecret,
  openMessage,
  sealMessage,
  secretFromFragment,
  shareLinkParts,
} from "./sealed.js";
import { insertById, messageItem, parseFileMessage, pendingItem, renderMembers } from "./render.js";
import { Connection, affinityHint } from "./socket.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
// Upload limits and types (files/context_processors.py).
const filesConfig = JSON.parse(document.getElementById("files-config").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  // {info, key, name, joinKey, password, ownerToken, secret, sealed, frames}. A sealed
  // room (info.sealed) has no key but `sealed`, the keys from its secret, or null while
  // the page lacks the whole link; its messages are then kept in `frames` to be read
  // once the person pastes the link.
  room: null,
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

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors($("lobby"));
  if (!required("create-name", "Enter a room name.") || !required("create-owner", "Enter your name.")) return;
  const password = $("create-password").value;
  const message = {
    type: "CreateRoom",
    name: $("create-name").value,
    description: $("create-description").value,
    password: password || null,
    owner_name: $("create-owner").value,
  };
  // A sealed room's secret is drawn here and never leaves the page but in the share link.
  let secret = null;
  if ($("create-sealed").checked) {
    try {
      needsSecureContext();
      secret = newSecret();
      Object.assign(message, { sealed: true, key_check: (await deriveKeys(secret)).keyCheck });
    } catch (error) {
      return showError("create-error", error.message);
    }
  }
  state.draft = { password, secret };
  lobbyRequest("create", message, "create-form");
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearErrors($("lobby"));
  if (!required("join-key", "Enter the room's join key.") || !required("join-name", "Enter your name.")) return;
  const password = $("join-password").value;
  // The field takes a join key or a whole share link (whose fragment is the secret);
  // on a share link's page the secret is in the page's own address.
  const typed = $("join-key").value.trim();
  const link = shareLinkParts(typed);
  const joinKey = link?.joinKey ?? typed;
  const secret = link ? link.secret : joinKey === config.join_key ? secretFromFragment(location.hash) : null;
  state.draft = { password, secret };
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

// The keys of a sealed room from a secret, or null when there is no secret or it is not
// this room's (its key_check differs): the link was cut short or is another one.
async function sealedKeys(secret, keyCheck) {
  if (!secret) return null;
  needsSecureContext();
  const keys = await deriveKeys(secret);
  return keys.keyCheck === keyCheck ? keys : null;
}

function shareLinkOf(room) {
  const link = `${location.origin}/rooms/${encodeURIComponent(room.joinKey)}/`;
  return room.sealed ? `${link}#${fragmentOf(room.secret)}` : link;
}

async function enterRoom(message, ownerToken) {
  endPending();
  const info = message.room_info;
  const secret = state.draft?.secret ?? null;
  let key = null;
  let sealed = null;
  try {
    if (info.sealed) sealed = await sealedKeys(secret, info.key_check);
    else key = await importKey(message.encryption_key);
  } catch (error) {
    showError("lobby-error", error.message);
    send({ type: "LeaveRoom" }, "room");
    return;
  }
  const room = {
    info,
    key,
    sealed,
    secret: sealed ? secret : null,
    frames: new Map(),
    name: message.name,
    joinKey: info.join_key,
    password: state.draft?.password ?? "",
    ownerToken,
  };
  state.room = room;
  // A reconnect goes where the room's other members are (a creator's first socket could not).
  affinityHint(info.join_key).then((hint) => {
    connection.hint = hint;
  });
  state.seen = new Set();
  state.maxId = null;
  state.outbox = new Map();
  $("messages").replaceChildren();
  $("room-name").textContent = info.name;
  $("room-description").textContent = info.description;
  document.title = `${info.name} · Encrypted chat rooms`;
  setMembers(message.participants ?? [room.name]);
  $("share").hidden = !ownerToken;
  const link = shareLinkOf(room);
  $("share-link").value = link;
  // The address keeps a sealed room's whole link: a reload finds the secret again.
  if (sealed) history.replaceState(null, "", link);
  $("copy-status").textContent = "";
  clearErrors($("room"));
  $("lobby").hidden = true;
  $("room").hidden = false;
  setLocked(room);
  setStatus(`In room ${info.name} as ${room.name}.`);
  if (!(info.sealed && !sealed)) $("message").focus();
}

// A sealed room without its whole link: members are shown, nothing can be read or sent,
// and the person is asked for the link.
function setLocked(room) {
  const locked = Boolean(room?.info.sealed && !room.sealed);
  for (const node of document.querySelectorAll("#message-form :is(textarea, button), #file-form :is(input, button)")) {
    node.disabled = locked;
  }
  if (locked) showLinkForm(INCOMPLETE_LINK);
  else hideLinkForm();
}

function showLinkForm(problem) {
  $("link-problem").textContent = problem;
  $("link-form").hidden = false;
}

function hideLinkForm() {
  $("link-form").hidden = true;
  $("whole-link").value = "";
  showError("whole-link-error", "");
}

// The whole share link pasted: on a share link's page, its secret goes into the address;
// in a sealed room, it is checked against the room's key_check and the room is read.
$("link-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("whole-link-error", "");
  const link = shareLinkParts($("whole-link").value);
  if (!link?.secret) return showError("whole-link-error", INCOMPLETE_LINK);
  const room = state.room;
  if (!room) {
    const address = `${location.origin}/rooms/${encodeURIComponent(link.joinKey)}/#${fragmentOf(link.secret)}`;
    if (link.joinKey !== config.join_key) return location.assign(address); // another room's page
    history.replaceState(null, "", address);
    hideLinkForm();
    showError("join-key-error", "");
    return $("join-name").focus();
  }
  if (link.joinKey !== room.joinKey) return showError("whole-link-error", "This link is for another room.");
  let keys;
  try {
    keys = await sealedKeys(link.secret, room.info.key_check);
  } catch (error) {
    return showError("whole-link-error", error.message);
  }
  if (state.room !== room) return;
  if (!keys) return showError("whole-link-error", INCOMPLETE_LINK);
  room.sealed = keys;
  room.secret = link.secret;
  const whole = shareLinkOf(room);
  history.replaceState(null, "", whole);
  $("share-link").value = whole;
  setLocked(room);
  inbox = inbox.then(() => readAgain(room));
  $("message").focus();
});

// The messages that came while the room was locked, read now that its keys are here.
async function readAgain(room) {
  const frames = [...room.frames.values()];
  room.frames = new Map();
  for (const message of frames) {
    if (state.room !== room) return;
    state.seen.delete(message.id);
    document.querySelector(`#messages li[data-id="${CSS.escape(String(message.id))}"]`)?.remove();
    await receiveMessage(message);
  }
}

// A fragment is a sealed room's secret (PROTOCOL.md, "Sealed rooms"): a sealed room's
// share link without it, or with one cut short, is told, with a field for the whole link.
function askForWholeLink() {
  if (config.sealed && !secretFromFragment(location.hash)) showLinkForm(INCOMPLETE_LINK);
}

function exitRoom(reason = "") {
  state.room = null;
  setLocked(null);
  askForWholeLink();
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

// What a message says: {text}, {file}, or why it cannot be shown (render.js, messageItem).
async function readBody(room, message) {
  if (room.info.sealed) return readSealed(room, message);
  const file = parseFileMessage(message.content);
  if (file) return { file };
  try {
    return { text: await decrypt(room.key, message.content) };
  } catch {
    return { undecryptable: true };
  }
}

// A sealed room's message opens only under the keys and with the sender the server
// delivered: one it re-attributed does not verify, and is never shown under a name.
async function readSealed(room, message) {
  if (!room.sealed) {
    room.frames.set(message.id, message);
    return { locked: true };
  }
  let payload;
  try {
    payload = await openMessage(room.sealed.messageKey, room.info.id, message.sender, message.content);
  } catch {
    return { unverified: true };
  }
  if (payload.t === "text" && typeof payload.body === "string") return { text: payload.body };
  if (payload.t === "file" && isCard(payload)) {
    return { file: { name: payload.name, id: payload.id.toLowerCase(), card: payload } };
  }
  return { unsupported: true };
}

async function receiveMessage(message) {
  const room = state.room;
  // One of ours, live or in a rejoin's History: stored, so no longer pending.
  const mine = state.outbox.get(message.content);
  state.outbox.delete(message.content);
  if (!room || state.seen.has(message.id)) return mine?.item.remove(); // History and live may overlap.
  state.seen.add(message.id);
  state.maxId = Math.max(state.maxId ?? message.id, message.id);
  const body = await readBody(room, message);
  if (state.room !== room) return;
  const item = messageItem(message, body, { mine: message.sender === room.name });
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  mine?.item.remove();
  insertById(list, item);
  if (body.file) files.decorate(item, body.file, Boolean(room.ownerToken));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function sendChat() {
  const box = $("message");
  const text = box.value;
  showError("message-error", "");
  const room = state.room;
  if (!text.trim() || !room) return;
  if (room.info.sealed && !room.sealed) return showError("message-error", INCOMPLETE_LINK);
  const content = room.sealed
    ? await sealMessage(room.sealed.messageKey, room.info.id, room.name, { t: "text", body: text })
    : await encrypt(room.key, text);
  if (state.room !== room) return;
  if (!connection.isOpen || state.rejoining) {
    showError("message-error", "Not connected. Your message is kept; send it again once reconnected.");
    return;
  }
  box.value = "";
  post(content, { text, item: pendingItem(room.name, text), sent: false });
}

// A chat content of ours, shown as pending until the server sends it back; behind
// messages waiting for a rejoin's History it waits too, so they keep their order.
function post(content, entry) {
  state.outbox.set(content, entry);
  const list = $("messages");
  list.append(entry.item);
  list.scrollTop = list.scrollHeight;
  if (!state.catchingUp && !state.rejoining) sendPending(content, entry);
}

// A sealed room's file, stored: its card (with the file's key) goes to the room as a
// message. Kept in the outbox like any message, so a dropped connection sends it again.
async function postCard(card) {
  const room = state.room;
  if (!room?.sealed) return;
  const content = await sealMessage(room.sealed.messageKey, room.info.id, room.name, card);
  if (state.room !== room) return;
  post(content, { text: null, item: pendingItem(room.name, `File: ${card.name}`), sent: false });
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
// it is taken to be about the last one sent, which goes back into an empty box (a file's
// card has no text to give back).
function chatRefused() {
  const [content, entry] = [...state.outbox].findLast(([, entry]) => entry.sent) ?? [];
  if (!entry) return;
  state.outbox.delete(content);
  entry.item.remove();
  if (entry.text !== null && !$("message").value) $("message").value = entry.text;
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

const files = setUpFiles({
  config: filesConfig,
  send,
  connection,
  showError,
  currentRoom: () => state.room,
  postCard,
});

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
  RoomCreated: (m) => enterRoom(m, m.owner_token),
  RoomJoined: (m) => {
    if (state.room && state.rejoining) {
      state.rejoining = false;
      state.rejoinAttempts = 0;
      state.room.name = m.name;
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
    return enterRoom(m, null);
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
    state.room?.frames.delete(m.id);
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
  askForWholeLink();
  $("join-name").focus();
  connection.hint = await affinityHint(config.join_key);
}
connection.open();
