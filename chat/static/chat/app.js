// The browser app: lobby (create or join), then the room. Wire format: PROTOCOL.md.

import { decrypt, encrypt, importKey, needsSecureContext } from "./crypto.js";
import { setUpConversation, quoteNodes, quoteOf } from "./conversation.js";
import { backoff, errorPlace, humanError, ROOM_ENDED } from "./errors.js";
import { formatSize, setUpFiles, shownName } from "./files.js";
import { Requests } from "./requests.js";
import {
  answerProblem,
  deriveKeys,
  fragmentOf,
  INCOMPLETE_LINK,
  isCard,
  joinKeyOf,
  newSecret,
  NOT_A_LINK,
  openMessage,
  REJOIN_CHANGED,
  sameSeat,
  sealMessage,
  secretFromFragment,
  shareLinkParts,
} from "./sealed.js";
import {
  ariaDisabled,
  describedBy,
  el,
  gapItem,
  inOrder,
  insertById,
  isolated,
  markEdited,
  messageItem,
  parseFileMessage,
  pendingItem,
  renderMembers,
  renderReactions,
  setAriaDisabled,
  setText,
} from "./render.js";
import { Connection, affinityHint } from "./socket.js";
import { atBottom, setUpUnread } from "./unread.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
// Upload limits and types (files/context_processors.py).
const filesConfig = JSON.parse(document.getElementById("files-config").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  // {info, key, name, joinKey, password, ownerToken, secret, sealed, frames, cards}. A sealed
  // room (info.sealed) has no key but `sealed`, the keys from its secret, or null while
  // the page lacks the whole link; its messages are then kept in `frames` to be read
  // once the person pastes the link.
  room: null,
  seen: new Set(),
  deleted: new Set(), // ids of messages deleted while on the page, the newest DELETED_KEPT: quotes of them say so
  maxId: null,
  minId: null, // the oldest message shown: older ones come with GetHistory {before: minId}
  olderPending: false, // a GetHistory is answered in order, one at a time
  olderHeld: null, // the timer while older pages wait after one refused for its rate
  olderRetries: 0,
  historyStart: false, // an empty older page came: nothing is older
  joinHistoryDue: false, // a join's RoomJoined came: its History (if any) is next
  membersTimer: null, // until the member list is asked for again (listMembers)
  seeking: null, // the id a reply's quote was clicked for, while older pages come
  members: [],
  pending: null, // "create" | "join" while the lobby waits for its answer
  rejoining: false,
  rejoinAttempts: 0,
  // When a rejoin was first refused name_taken (rejoinFailed).
  nameTakenSince: null,
  // Our chat messages not yet sent back by the server, by content (the random nonce makes
  // each ciphertext unique, and chatclient matches the same way): {text, replyTo, item,
  // sent, card}, in the order typed; `card`: a sealed room's file card (text null).
  // `sent`: on the current socket. They go out one at a time (sendNext).
  outbox: new Map(),
  chatHeld: null, // the timer while a message refused for its rate waits to be sent again
  chatRetries: 0,
  catchingUp: false, // a rejoin's catch-up is under way; the outbox waits for it
  catchUp: null, // {floor, top, pages, retries, timer, missed, reached, whole}: see catchUp()
  gapFill: null, // {item, retries, timer, shown, pages}: a gap's messages being read (fillGap)
  gapsWaiting: [], // the markers pressed while another gap was read, in the order pressed
  queued: null, // a lobby request waiting for the socket to open
};

const connection = new Connection({ onOpen, onMessage, onDrop, onReplaced });
const requests = new Requests(connection);
const NOT_SENT = "not sent yet, reconnecting…";
const NEEDS_PASSWORD = "This room needs a password.";

// A frame the server answers; `context` (and `extra`) come back with its answer or Error.
function send(message, context, extra = {}) {
  return requests.send(message, { context, ...extra });
}

// The status line: texts, and names as `isolated` nodes (a name written right to left
// does not reorder the words around it).
function setStatus(...parts) {
  $("status").replaceChildren(...parts);
}

// What screen readers are told and the page does not show (a visually hidden status).
function announce(...parts) {
  $("announcements").replaceChildren(...parts);
}

const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;

// An error of a lobby's or the link form's field (its id, and "-error") also marks the
// field invalid and describes it, so that it is read with the field.
function showError(id, text) {
  $(id).textContent = text;
  const field = document.getElementById(id.replace(/-error$/, ""));
  if (!field?.matches("#lobby :is(input, textarea), #whole-link")) return;
  if (text) field.setAttribute("aria-invalid", "true");
  else field.removeAttribute("aria-invalid");
  describedBy(field, id, Boolean(text));
}

function clearErrors(container) {
  for (const node of container.querySelectorAll(".error")) showError(node.id, "");
}

// --- Lobby -------------------------------------------------------------------------

// A form's button is not used again while its request waits, and keeps the focus.
const lobbyButton = (formId) => $(formId).querySelector("button[type=submit]");

function lobbyRequest(context, message, formId) {
  state.pending = context;
  setAriaDisabled(lobbyButton(formId), true);
  // Between sockets (just after a room closed, say) the request waits for the next one.
  if (!send(message, context)) {
    state.queued = { message, context };
    setStatus("Connecting to the server…");
    if (connection.stopped) connection.open();
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
  if (ariaDisabled(lobbyButton("create-form"))) return;
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
  // What the answer must match (answerProblem).
  const asked = { name: message.owner_name, sealed: Boolean(secret), keyCheck: message.key_check, resuming: false };
  state.draft = { password, secret, asked };
  lobbyRequest("create", message, "create-form");
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (ariaDisabled(lobbyButton("join-form"))) return;
  clearErrors($("lobby"));
  if (!required("join-key", "Enter the room's join key.") || !required("join-name", "Enter your name.")) return;
  const password = $("join-password").value;
  // The field takes a join key or a whole share link (whose fragment is the secret), even
  // inside a sentence; on a share link's page the secret is in the page's own address.
  // Anything else is refused here: what was pasted may hold the secret, and only the
  // join key ever goes to the server.
  const typed = $("join-key").value.trim();
  const joinKey = joinKeyOf(typed);
  if (joinKey === null) {
    showError("join-key-error", NOT_A_LINK);
    return $("join-key").focus();
  }
  const link = shareLinkParts(typed);
  const secret = link ? link.secret : joinKey === config.join_key ? secretFromFragment(location.hash) : null;
  const ownerToken = savedOwner(joinKey);
  const name = $("join-name").value;
  const participantToken = savedParticipant(joinKey, name);
  // A sealed room's page expects a sealed room, with its secret or without (answerProblem).
  const sealed = Boolean(secret) || (config.sealed && joinKey === config.join_key);
  state.draft = { password, secret, ownerToken, asked: { name, sealed, resuming: Boolean(participantToken) } };
  lobbyRequest(
    "join",
    {
      type: "JoinRoom",
      join_key: joinKey,
      password: password || null,
      name,
      participant_token: participantToken,
      owner_token: ownerToken,
    },
    "join-form",
  );
});

// The participant token of this tab's last visit to a room (sessionStorage: this tab
// only, gone when it closes): joining again under the same name comes back as the same
// participant, with the rights on its messages and files (PROTOCOL.md, "Resuming").
function savedParticipant(joinKey, name) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(`chat:participant:${joinKey}`));
    const same = saved?.name.toLocaleLowerCase() === name.trim().toLocaleLowerCase();
    return same && typeof saved.token === "string" ? saved.token : null;
  } catch {
    return null;
  }
}

// The name this tab last had in the room (a reload's join form shows it, so that
// joining resumes that participant), or "".
function savedName(joinKey) {
  try {
    const name = JSON.parse(sessionStorage.getItem(`chat:participant:${joinKey}`))?.name;
    return typeof name === "string" ? name : "";
  } catch {
    return "";
  }
}

function saveParticipant(room) {
  try {
    sessionStorage.setItem(`chat:participant:${room.joinKey}`, JSON.stringify({ name: room.name, token: room.participantToken }));
  } catch {
    // storage refused: a reload joins as someone new
  }
}

// The owner token of a room this tab created (sessionStorage, as above): the creator
// who reloads and joins again through the share link is its owner again, on the page
// as on the server. A wrong or stale one joins without owner rights (PROTOCOL.md).
function savedOwner(joinKey) {
  try {
    return sessionStorage.getItem(`chat:owner:${joinKey}`);
  } catch {
    return null;
  }
}

function saveOwner(room) {
  try {
    sessionStorage.setItem(`chat:owner:${room.joinKey}`, room.ownerToken);
  } catch {
    // storage refused: a reload joins without owner rights
  }
}

function endPending() {
  state.pending = null;
  for (const button of document.querySelectorAll("#lobby button[type=submit]")) {
    button.disabled = false;
    setAriaDisabled(button, false);
  }
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
  const problem = state.draft ? answerProblem(message, state.draft.asked) : "No room was asked for.";
  if (problem) {
    showError("lobby-error", problem);
    return leaveOnServer();
  }
  let key = null;
  let sealed = null;
  try {
    if (info.sealed) sealed = await sealedKeys(secret, info.key_check);
    else key = await importKey(message.encryption_key);
  } catch (error) {
    showError("lobby-error", error.message);
    return leaveOnServer();
  }
  const room = {
    info,
    key,
    sealed,
    secret: sealed ? secret : null,
    frames: new Map(),
    cards: new Map(), // a sealed room's file id -> {messageId, card}: its first card (forgetCard)
    name: message.name,
    joinKey: info.join_key,
    password: state.draft?.password ?? "",
    ownerToken,
    participantToken: message.participant_token ?? null,
  };
  state.room = room;
  if (room.participantToken) saveParticipant(room);
  if (room.ownerToken) saveOwner(room);
  // A reconnect goes where the room's other members are (a creator's first socket could not).
  affinityHint(info.join_key).then((hint) => {
    connection.hint = hint;
  });
  Object.assign(state, { seen: new Set(), deleted: new Set(), maxId: null, minId: null, outbox: new Map() });
  clearTimeout(state.olderHeld);
  Object.assign(state, { olderPending: false, olderHeld: null, olderRetries: 0, historyStart: false, seeking: null });
  $("load-older").hidden = false;
  setAriaDisabled($("load-older"), false);
  $("history-start").hidden = true;
  conversation.reset();
  $("messages").replaceChildren();
  $("room-name").textContent = info.name;
  $("room-description").textContent = info.description;
  unread.enter(info);
  listMembers(message.participants ?? [room.name]);
  $("share").hidden = !ownerToken;
  const link = shareLinkOf(room);
  $("share-link").value = link;
  // The address is the room's share link (a sealed room's whole one): a reload comes back
  // to this room's join form, with its secret, and nothing of a room left before stays.
  history.replaceState(null, "", link);
  $("copy-status").textContent = "";
  announce();
  clearErrors($("room"));
  $("lobby").hidden = true;
  $("room").hidden = false;
  setLocked(room);
  setStatus("In room ", isolated(info.name), " as ", isolated(room.name), ".");
  // A sealed room without its whole link is read once the link is pasted.
  $(info.sealed && !sealed ? "whole-link" : "message").focus();
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
  await addQuietly(async () => {
    let read = 0;
    for (const message of frames) {
      if (state.room !== room) break;
      state.seen.delete(message.id);
      messageById(message.id)?.remove();
      if (await receiveMessage(message)) read += 1;
    }
    return read;
  }, (n) => `${count(n, "sealed message")} opened.`);
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
  state.nameTakenSince = null;
  state.joinHistoryDue = false;
  clearTimeout(state.membersTimer);
  stopCatchUp();
  stopGapFills();
  // Typed but never sent (the connection was down): back in the box, not lost with the room.
  const unsent = [...state.outbox.values()].filter((entry) => !entry.sent && entry.text !== null);
  state.outbox = new Map();
  clearTimeout(state.chatHeld);
  Object.assign(state, { chatHeld: null, chatRetries: 0 });
  files.reset();
  conversation.reset();
  if (unsent.length) {
    const box = $("message");
    box.value = [box.value, ...unsent.map((entry) => entry.text)].filter(Boolean).join("\n");
  }
  unread.leave();
  $("room").hidden = true;
  $("lobby").hidden = false;
  document.title = "Encrypted chat rooms";
  showError("lobby-error", reason);
  setStatus(reason ? "" : "You left the room.");
  (config.join_key ? $("join-name") : $("create-name")).focus();
}

// The room's whole member list (RoomCreated, RoomJoined, Members). It is asked for again
// after config.members_refresh seconds (drawn from 0.75 to 1.25 times that, so that
// pages do not ask together; 0: never): a ParticipantJoined or ParticipantLeft lost on
// the server's bus (its Redis restarted) leaves the list wrong that long at most.
function listMembers(names) {
  setMembers(names);
  askMembersLater(config.members_refresh * 1000 * (0.75 + Math.random() / 2));
}

// Only while the page is shown, in the room and connected; else, or refused, a little
// later (never sooner than a second).
function askMembersLater(wait = Math.min(15_000, config.members_refresh * 1000)) {
  clearTimeout(state.membersTimer);
  if (!(config.members_refresh > 0)) return;
  state.membersTimer = setTimeout(() => {
    if (!state.room) return;
    const shown = document.visibilityState !== "hidden";
    if (!(shown && !state.rejoining && send({ type: "GetMembers" }, "members"))) askMembersLater();
  }, Math.max(1000, wait));
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
  // A card of a type this server would not take, or html or svg, is never offered; its
  // name is shown and saved as the server names a standard room's files.
  if (payload.t === "file" && isCard(payload, filesConfig.files_allowed_mime_types)) {
    // No client edits a card: an edit into one would take an earlier message's place.
    if (message.edited_at || !firstCard(room, message.id, payload)) return { unverified: true };
    const card = { ...payload, name: shownName(payload.name, payload.mime_type, filesConfig.files_extensions) };
    return { file: { name: card.name, id: card.id.toLowerCase(), card } };
  }
  return { unsupported: true };
}

// A file's id is learnt from its card, so its first card is its uploader's: a later card
// for the id that differs from it is a member's copy made to pass the file off as
// something else, or to break it, and is not shown as the file (chatclient does the same).
// A card earlier than the one taken for the first (an older page brought it) is the first:
// the messages shown under the other one, when it differs, were such copies, and are
// shown as what they are.
const CARD_FIELDS = ["name", "mime_type", "size", "sha256", "key"];
const sameCard = (one, other) => CARD_FIELDS.every((field) => one[field] === other[field]);

function firstCard(room, messageId, card) {
  const id = card.id.toLowerCase();
  const known = room.cards.get(id);
  if (known && messageId >= known.messageId) return sameCard(known.card, card);
  room.cards.set(id, { messageId, card });
  if (known && !sameCard(known.card, card)) fileItems(id).forEach(copyUnmasked);
  return true;
}

// The messages on the page shown as the file `fileId`.
function fileItems(fileId) {
  return [...document.querySelectorAll(`#messages li.message[data-file-id="${CSS.escape(fileId)}"]`)];
}

// A message shown as a file whose card turned out to be a copy: it is shown as any
// message that does not verify, with its quote and its reactions; like any, it is no
// one's, not even when the page's person sent it (messageItem marks no such message
// "mine", and rights offers no Delete), as is a copy of theirs read after the first card.
function copyUnmasked(item) {
  const quote = item.querySelector(".quote");
  const message = { id: item.dataset.id, sent_at: item.dataset.sentAt, reply_to: quote?.dataset.replyTo ?? null };
  const other = messageItem(message, { unverified: true }, { mine: false, me: state.room.name });
  other.querySelector(".reactions").replaceWith(item.querySelector(".reactions"));
  const focused = item.contains(document.activeElement);
  files.forget(item);
  item.replaceWith(other);
  if (focused) other.querySelector(".message-actions").focus();
  fillQuotes(other);
}

function messageById(id) {
  return document.querySelector(`#messages li.message[data-id="${CSS.escape(String(id))}"]`);
}

// A message arrives: `live` (a ChatMessage), or in a History, `older` when it answers a
// GetHistory (it goes above, and the view stays on what the person was reading), `gap`
// too when that read a marked gap (it goes in above the marker, which may be below what
// the person reads: what is in view stays where it is on screen). True when it was added
// to the page.
async function receiveMessage(message, { live = false, older = false, gap = false } = {}) {
  const room = state.room;
  // One of ours, live or in a rejoin's History: stored, so no longer pending, and the
  // next one goes.
  const mine = state.outbox.get(message.content);
  if (mine) {
    state.outbox.delete(message.content);
    state.chatRetries = 0;
    if (mine.card) setStatus("Shared ", isolated(mine.card.name), ` (${formatSize(mine.card.size)}).`);
    sendNext();
  }
  if (!room || state.seen.has(message.id)) {
    mine?.item.remove(); // History and live may overlap.
    return false;
  }
  state.seen.add(message.id);
  state.maxId = Math.max(state.maxId ?? message.id, message.id);
  state.minId = Math.min(state.minId ?? message.id, message.id);
  const body = await readBody(room, message);
  if (state.room !== room) return false;
  const own = message.sender === room.name;
  const item = messageItem(message, body, { mine: own, me: room.name });
  const list = $("messages");
  const wasAtBottom = atBottom(list);
  const fromBottom = list.scrollHeight - list.scrollTop;
  const add = () => {
    mine?.item.remove();
    insertById(list, item);
    if (body.file) files.decorate(item, body.file, Boolean(room.ownerToken));
    fillQuotes(item);
  };
  if (gap) keepingView(list, add);
  else add();
  if (older && !gap) list.scrollTop = list.scrollHeight - fromBottom;
  else if (wasAtBottom) list.scrollTop = list.scrollHeight;
  if (live) conversation.notTyping(message.sender);
  unread.added(item, { mine: own, live, wasAtBottom });
  if (!older) keepRecent();
  if (live && item.classList.contains("mentions-me")) conversation.notifyMention(message.sender, body.text, room.info.name);
  return true;
}

// A tab left open in a busy room shows at most MESSAGES_KEPT messages (never fewer than a
// join's history, CHAT_HISTORY_LIMIT), scrolled up or not: each message that comes past
// that number (live, or in a rejoin's History or catch-up; not an older page or a gap's,
// which the person asked for) takes as many off the end of the list further from what
// the list shows, never one in view nor the focus:
// - the oldest, while the list shows its end or is scrolled nearer its end than its
//   start; what is in view stays where it is on screen. They are read again, as older
//   pages, by scrolling up.
// - scrolled nearer its start: those just above the newest NEWEST_KEPT, and a gap marker
//   (Gaps) stands where they were, its button reads them again. The list's end (and
//   "Jump to latest") still shows the newest messages. Not while a catch-up or a gap's
//   reading is under way: their pages would read messages into the marker as it grows.
//   A catch-up's end takes off what came past that number meanwhile (caughtUp).
const MESSAGES_KEPT = Math.max(500, config.history_limit);
const NEWEST_KEPT = 50;

function keepRecent() {
  const list = $("messages");
  if (list.childElementCount <= MESSAGES_KEPT) return;
  const items = list.querySelectorAll("li.message[data-id]");
  const extra = items.length - MESSAGES_KEPT;
  if (extra <= 0) return;
  if (atBottom(list)) {
    if (trimOldest(list, extra)) list.scrollTop = list.scrollHeight;
  } else if (list.scrollTop >= list.scrollHeight - list.scrollTop - list.clientHeight) {
    keepingView(list, () => trimOldest(list, extra));
  } else if (!state.catchUp && !state.gapFill) {
    trimNewest(list, items[items.length - NEWEST_KEPT], extra);
  }
}

// The first of the list's items in view (its bottom below the list's top), or null.
function firstInView(list) {
  const top = list.getBoundingClientRect().top;
  return [...list.children].find((item) => item.getBoundingClientRect().bottom > top) ?? null;
}

// `change` takes items off above the first one in view, or puts some in above or below it
// (a gap's messages), and that one stays where it is on screen: the browser keeps it there
// (CSS scroll anchoring, to a fraction of a pixel); one without scroll anchoring (Safari)
// is helped, and what rounding to its whole pixels leaves over is carried to the next
// time, so that many trims in a row do not add up to a drift.
const SCROLL_ANCHORING = CSS.supports("overflow-anchor", "auto");
let anchorSlip = 0;

function keepingView(list, change) {
  if (SCROLL_ANCHORING) return change();
  const anchor = firstInView(list);
  const offset = () => anchor.getBoundingClientRect().top - list.getBoundingClientRect().top;
  const before = anchor && offset();
  change();
  if (!anchor?.isConnected) return;
  const wanted = list.scrollTop + offset() - before + anchorSlip;
  list.scrollTop = wanted;
  anchorSlip = Math.max(-1, Math.min(1, wanted - list.scrollTop)); // not what a scroll past the end left
}

// The `count` oldest messages go, and what is above the oldest kept (an unread divider, a
// marker), down to the first item in view or holding the focus. True when one went.
function trimOldest(list, count) {
  // Only the items that go are measured, all before the first goes (one layout): a tab at
  // the end of its list measured every item above the view for each message that came.
  const top = list.getBoundingClientRect().top;
  const going = [];
  let removed = 0;
  for (let item = list.firstElementChild; removed < count && item; item = item.nextElementSibling) {
    // Never one in view, nor the focus: not pulled away.
    if (item.getBoundingClientRect().bottom > top || item.contains(document.activeElement)) break;
    going.push(item);
    if (item.matches("li.message[data-id]")) removed += 1;
  }
  for (const item of going) {
    if (item.matches("li.message[data-id]")) forgetShown(item);
    item.remove();
  }
  if (!removed) return false;
  dropLeadingGaps(list);
  state.minId = Number(list.querySelector("li.message[data-id]").dataset.id);
  if (state.historyStart) notAtStart();
  return true;
}

// The `count` messages just above `newest` (the oldest of the NEWEST_KEPT) go, up to one
// in view or holding the focus, with what is between them; a marker stands for them, and
// for any hole marked there already (it grows as more go).
function trimNewest(list, newest, count) {
  const bottom = list.getBoundingClientRect().bottom;
  const band = [];
  let removed = 0;
  let above = newest.previousElementSibling;
  for (; above && removed < count; above = above.previousElementSibling) {
    if (above.contains(document.activeElement) || above.getBoundingClientRect().top < bottom) break;
    band.push(above);
    if (above.matches("li.message[data-id]")) removed += 1;
  }
  while (above && !above.matches("li.message[data-id]")) above = above.previousElementSibling;
  if (!removed || !above) return;
  for (const item of band) {
    if (item.matches("li.message[data-id]")) forgetShown(item);
    if (!item.matches("li.gap")) item.remove();
  }
  const markers = [];
  for (let item = above.nextElementSibling; item !== newest; item = item.nextElementSibling) {
    if (item.matches("li.gap")) markers.push(item);
  }
  const marker = markers.find((item) => item.contains(document.activeElement)) ?? markers[0] ?? gapMarker("trimmed");
  for (const other of markers) if (other !== marker) closeGap(other);
  const words = wordsOf(marker);
  marker.dataset.kind = [...new Set(["trimmed", ...markers.flatMap(kindsOf)])].sort().join(" ");
  if (wordsOf(marker) !== words) gapNote(marker);
  marker.dataset.after = above.dataset.id;
  placeGap(list, marker, Number(newest.dataset.id));
}

// A message taken off the page (not deleted): once unseen, an older page brings it back.
function forgetShown(item) {
  const id = Number(item.dataset.id);
  state.seen.delete(id);
  state.room?.frames.delete(id);
  if (item.dataset.fileId) files.forget(item);
  forgetCard(item);
}

// A sealed room keeps the first card of the files its page shows (firstCard), not of
// every file shared while it was open: once the last message showing a file leaves the
// page, its card goes, and the page knows that file as if it had never seen it. When
// its first card is read again, a copy taken for the file meanwhile is unmasked.
function forgetCard(item) {
  const fileId = item.dataset.fileId;
  if (fileId && !fileItems(fileId).some((other) => other !== item)) state.room?.cards.delete(fileId);
}

// Messages older than those shown are on the server again: the button asks for them.
function notAtStart() {
  state.historyStart = false;
  $("history-start").hidden = true;
  $("load-older").hidden = false;
}

// How many of `messages` were new to the page.
async function receiveAll(messages, options) {
  let added = 0;
  for (const message of messages) if (await receiveMessage(message, options)) added += 1;
  return added;
}

// Messages that come together (a History, a page of older ones, a catch-up's page, a
// sealed room read once its link is pasted) go in while the log is busy, so that screen
// readers do not read each one out (a log announces what is added to it): one line,
// `told(added)`, says how many came instead. `add` returns how many it added.
async function addQuietly(add, told) {
  const list = $("messages");
  const room = state.room;
  list.setAttribute("aria-busy", "true");
  let added = 0;
  try {
    added = await add();
  } finally {
    list.setAttribute("aria-busy", "false");
  }
  if (added && room && state.room === room) announce(told(added)); // not in a room entered since
}

// A reply's quote shows the start of the message it answers once that one is on the
// page; quotes of a message change with it (edited, deleted, read after a sealed room's
// link is pasted).
function fillQuotes(item) {
  const quote = item.querySelector(".quote");
  if (quote) quote.replaceChildren(...quoteText(Number(quote.dataset.replyTo)));
  for (const other of quotesOf(item.dataset.id)) other.replaceChildren(...quoteNodes(item));
}

// The quotes of the message `id` in the replies on the page.
function quotesOf(id) {
  return document.querySelectorAll(`#messages .quote[data-reply-to="${CSS.escape(String(id))}"]`);
}

function quoteText(id) {
  const original = messageById(id);
  if (original) return quoteNodes(original);
  return [deletedOrGone(id) ? quoteOf(null) : "Earlier message"];
}

// The message `id` of this room, not on the page: deleted, as far as the page can tell.
// It was deleted here, or the page holds every message of the room newer than its oldest
// one (History leaves deleted ones out), or the whole room. A rejoin's gap that the
// catch-up has yet to fill reads as deleted until the catch-up brings the message in; one
// it left marked (gapOf) does not.
function deletedOrGone(id) {
  return state.deleted.has(id) || ((state.historyStart || id > (state.minId ?? 0)) && !gapOf(id));
}

// A quote clicked: its message is scrolled to and focused, after older pages come in
// when it is further up than the page has loaded.
function showMessage(id) {
  const item = messageById(id);
  if (item) {
    state.seeking = null;
    for (const other of document.querySelectorAll("#messages .highlight")) other.classList.remove("highlight");
    item.classList.add("highlight");
    item.tabIndex = -1;
    item.addEventListener("blur", () => item.classList.remove("highlight"), { once: true });
    item.scrollIntoView({ block: "center" });
    item.focus({ preventScroll: true });
    return;
  }
  // In a marked gap: its messages are read, then this one is shown (gapPage).
  const gap = gapOf(id);
  if (gap) {
    state.seeking = fillGap(gap) ? id : null;
    return;
  }
  if (deletedOrGone(id)) {
    state.seeking = null;
    showError("message-error", humanError({ code: "message_not_found" }));
    return;
  }
  state.seeking = id;
  loadOlder(100);
}

function loadOlder(limit = 50) {
  if (!state.room || state.rejoining || state.olderPending || state.olderHeld || state.historyStart) return;
  if (state.minId === null) return reachedStart();
  state.olderPending = send({ type: "GetHistory", before: state.minId, limit }, "history");
  setAriaDisabled($("load-older"), state.olderPending);
}

function olderArrived(empty) {
  state.olderPending = false;
  setAriaDisabled($("load-older"), Boolean(state.olderHeld));
  if (empty) reachedStart();
  if (state.seeking !== null) showMessage(state.seeking);
}

// An older page refused for its rate: none is asked for (not by scrolling either) until a
// delay is over, longer after each refusal in a row, so that scrolling never adds up to
// the 51 refusals in 10 s that close the socket (1008).
function holdOlder() {
  state.olderRetries += 1;
  const wait = backoff(state.olderRetries - 1, 2000, 30_000);
  setAriaDisabled($("load-older"), true);
  state.olderHeld = setTimeout(() => {
    state.olderHeld = null;
    setAriaDisabled($("load-older"), state.olderPending);
  }, wait);
}

function reachedStart() {
  state.historyStart = true;
  const focused = document.activeElement === $("load-older");
  $("load-older").hidden = true;
  $("history-start").hidden = false;
  if (focused) $("history-start").focus(); // it says why the button went
}

$("load-older").addEventListener("click", () => loadOlder());
$("messages").addEventListener("scroll", () => {
  const list = $("messages");
  if (list.scrollTop < 40 && list.scrollHeight > list.clientHeight) loadOlder();
});
$("messages").addEventListener("click", (event) => {
  const quote = event.target.closest("button.quote");
  if (quote) showMessage(Number(quote.dataset.replyTo));
  const show = event.target.closest("li.gap button");
  if (show && !ariaDisabled(show)) fillGap(show.closest("li.gap"));
});

// What the page's person may do to a message: Edit their own text within the edit
// window, Delete their own or, as the room's owner, any. The server decides; this only
// offers what it would accept.
function rights(item) {
  const room = state.room;
  const attributed = !item.matches(".unverified, .locked");
  const own = Boolean(room) && attributed && item.dataset.sender === room.name;
  const age = Date.now() - Date.parse(item.dataset.sentAt);
  const edit = own && item.classList.contains("chat-text") && age < config.edit_window * 1000;
  return { edit, delete: own || Boolean(room?.ownerToken) };
}

function lastEditable() {
  const own = [...document.querySelectorAll("#messages li.message.mine.chat-text")];
  return own.reverse().find((item) => rights(item).edit) ?? null;
}

// Reactions and deletes are not kept for a later socket (a message may have changed
// meanwhile): without one, the person is told, as for a message or an edit.
const NOT_CONNECTED = "Not connected. Try again once reconnected.";

function react(item, emoji, on) {
  showError("message-error", "");
  if (!send({ type: "React", id: Number(item.dataset.id), emoji, on }, "react")) showError("message-error", NOT_CONNECTED);
}

// A sealed room's file card is text to the server: its file is deleted with it here, with
// its first card only (a copy's deletion leaves the uploader's file alone).
function removeMessage(item) {
  showError("message-error", "");
  const id = Number(item.dataset.id);
  if (!send({ type: "DeleteMessage", id }, "delete")) return showError("message-error", NOT_CONNECTED);
  const fileId = item.dataset.fileId;
  if (state.room?.info.sealed && fileId && state.room.cards.get(fileId)?.messageId === id) {
    send({ type: "DeleteFile", file_id: fileId }, "file");
  }
}

// The content of a text message as this room wants it: encrypted with the room key, or
// sealed under the room's keys with our name (an edit seals with the same data).
function contentOf(room, text) {
  return room.sealed
    ? sealMessage(room.sealed.messageKey, room.info.id, room.name, { t: "text", body: text })
    : encrypt(room.key, text);
}

async function sendChat() {
  const box = $("message");
  const text = box.value;
  showError("message-error", "");
  const room = state.room;
  if (!text.trim() || !room) return;
  if (room.info.sealed && !room.sealed) return showError("message-error", INCOMPLETE_LINK);
  const composing = conversation.composing();
  const content = await contentOf(room, text);
  if (state.room !== room) return;
  const offline = !connection.isOpen || state.rejoining;
  // An edit stays in the box until the server has it (messageEdited), or is given back.
  if (composing?.kind === "edit") {
    if (offline) return showError("message-error", "Not connected. Your edit is kept; save it again once reconnected.");
    conversation.editSent();
    return send({ type: "EditMessage", id: composing.id, content }, "edit");
  }
  conversation.stopComposing();
  box.value = "";
  const replyTo = composing?.kind === "reply" ? composing.id : null;
  // Typed while the connection is down: queued as "not sent yet", and sent once the
  // rejoin's catch-up is over (resendPending), like a message the drop caught in flight.
  const item = pendingItem(room.name, text);
  if (offline) item.querySelector(".note").textContent = NOT_SENT;
  post(content, { text, replyTo, item, sent: false, card: null });
}

// A chat content of ours, shown as pending until the server sends it back.
function post(content, entry) {
  state.outbox.set(content, entry);
  const list = $("messages");
  list.append(entry.item);
  list.scrollTop = list.scrollHeight;
  sendNext();
}

// A sealed room's file, stored: its card (with the file's key) goes to the room as a
// message. Kept in the outbox like any message, so a dropped connection or the rate
// limit sends it again; the file is shared once the card is stored.
async function postCard(card) {
  const room = state.room;
  if (!room?.sealed) return;
  const content = await sealMessage(room.sealed.messageKey, room.info.id, room.name, card);
  if (state.room !== room) return;
  setStatus("Sharing ", isolated(card.name), "…");
  post(content, { text: null, replyTo: null, item: pendingItem(room.name, `File: ${card.name}`), sent: false, card });
}

// Our pending messages go out one at a time, in the order typed, each once the server
// has sent back the one before: one refused for its rate is sent again before any later
// one. Behind a rejoin's catch-up they wait too (resendPending), so that what the server
// stored is not sent twice.
function sendNext() {
  if (state.catchingUp || state.rejoining || state.chatHeld) return;
  const waiting = [...state.outbox];
  if (!waiting.length || waiting.some(([, entry]) => entry.sent)) return;
  const [content, entry] = waiting[0];
  const reply = entry.replyTo === null ? {} : { reply_to: entry.replyTo };
  entry.sent = send({ type: "ChatMessage", content, ...reply }, "chat");
  entry.item.querySelector(".note").textContent = entry.sent ? "sending…" : NOT_SENT;
}

// After a rejoin, once its catch-up is over: what the server did not store is sent again.
function resendPending() {
  state.catchingUp = false;
  sendNext();
}

// --- Catching up after a rejoin ------------------------------------------------------
//
// A rejoin's `since` brings at most CHAT_HISTORY_LIMIT newer messages, and nothing of what
// became of those the page shows. So after each rejoin the page reads the room back with
// GetHistory, from the newest message down to the oldest one it shows: it adds those
// missed in between (the gap past CHAT_HISTORY_LIMIT), takes each shown message's current
// content and reactions (edited or reacted to while away), and removes those shown whose
// id falls in a page's range but are not in it (deleted while away). Only ids up to `top`
// (the newest before the drop) are judged: later ones came on this socket, whose live
// events keep them current. Then the pending messages are sent again (resendPending).
//
// At most CATCH_UP_PAGES pages of 100, so at most 300 messages are read back: three of a
// socket's READS_PER_MINUTE (60); a page shows more than that only after long reading,
// and those older ones are left as they are. A page refused for its rate is asked again
// after a delay, never at once. Missed messages it does not reach are marked (Gaps).
//
// What the page showed and took off to bound its memory (keepRecent) is not missed: the
// catch-up leaves it off (tookOff), and says nothing of it, so that it is neither told
// nor counted as missed, and the list does not grow back past MESSAGES_KEPT with it. The
// page knows which ids those are without keeping them: those older than the oldest it
// shows, and those a marker of taken-off messages stands for (its range). Older pages
// and the marker's button read them again when the person asks.
const CATCH_UP_PAGES = 3;
const CATCH_UP_PAGE = 100;
const NEWEST = Number.MAX_SAFE_INTEGER; // GetHistory before every id: the newest page

function catchUp() {
  stopCatchUp();
  state.catchingUp = true;
  // With nothing shown, one page still marks the end of the rejoin's History.
  const shown = state.maxId !== null;
  const [floor, top] = shown ? [state.minId, state.maxId] : [Infinity, -Infinity];
  // `reached`: the oldest missed message read so far; `whole`: every missed one is read.
  state.catchUp = { floor, top, pages: 0, retries: 0, timer: null, missed: 0, reached: null, whole: !shown };
  readPage(NEWEST);
}

function readPage(before) {
  const job = state.catchUp;
  send({ type: "GetHistory", before, limit: CATCH_UP_PAGE }, "catch-up", { job });
}

// What a rejoin brought, its History's and its pages' together: one count.
function toldMissed(job, added) {
  job.missed += added;
  return `${count(job.missed, "missed message")}.`;
}

function stopCatchUp() {
  clearTimeout(state.catchUp?.timer);
  state.catchUp = null;
}

// The rejoin's History is the newest CHAT_HISTORY_LIMIT messages after `since`: a full
// one may leave older missed ones out, which the catch-up's pages then read.
function rejoinHistory(job, messages) {
  if (!messages.length) return;
  job.reached = messages[0].id;
  job.whole ||= messages.length < config.history_limit;
}

function caughtUp() {
  leaveGap(state.catchUp);
  stopCatchUp();
  keepRecent(); // what came while it read, scrolled near the list's start, was not taken off
  resendPending();
}

// A page of the catch-up: every message of the room with an id from its oldest one up to
// `before` (excluded) is in it, and an empty page means there is none below `before`.
async function catchUpPage(request, m) {
  const job = state.catchUp;
  if (!job || request.job !== job || !state.room) return;
  job.retries = 0;
  const oldest = m.messages.length ? m.messages[0].id : -Infinity;
  const ids = new Set(m.messages.map((message) => message.id));
  for (const item of document.querySelectorAll("#messages li.message[data-id]")) {
    const id = Number(item.dataset.id);
    if (id >= oldest && id < m.before && id <= job.top && !ids.has(id)) messageDeleted(id);
  }
  const missed = async () => {
    let added = 0;
    for (const message of m.messages) {
      const item = messageById(message.id);
      if (item) await refreshMessage(item, message);
      else if (message.id > job.floor && !tookOff(message.id) && (await receiveMessage(message))) added += 1;
    }
    return added;
  };
  await addQuietly(missed, (n) => toldMissed(job, n));
  if (state.catchUp !== job) return;
  pageRead(m.before, oldest, { catchUp: true });
  job.whole ||= oldest <= job.top;
  if (job.reached !== null) job.reached = Math.min(job.reached, oldest);
  job.pages += 1;
  if (!m.messages.length || oldest <= job.floor || job.pages >= CATCH_UP_PAGES) return caughtUp();
  readPage(oldest);
}

// A message the page showed and took off (keepRecent): older than those it holds now
// (trimOldest, the catch-up's messages may have taken some off meanwhile), or in a
// marker of messages it took off (trimNewest).
function tookOff(id) {
  const gap = gapOf(id);
  return id < state.minId || Boolean(gap && kindsOf(gap).includes("trimmed"));
}

// A shown message as a page has it now: its latest edit (unless a live one is newer) and
// its reactions.
async function refreshMessage(item, message) {
  if (message.edited_at && !(item.dataset.editedAt >= message.edited_at)) await messageEdited(message);
  if (state.room && item.isConnected) renderReactions(item, message.reactions ?? [], state.room.name);
}

function catchUpRefused(request, error) {
  const job = state.catchUp;
  if (!job || request.job !== job) return;
  if (!askedAgain(job, error, () => state.catchUp === job && readPage(request.frame.before))) caughtUp();
}

// A page (a catch-up's or a gap's) refused for its rate or by a busy server is asked
// again after a delay, at most five times: `again` runs then. False: given up.
function askedAgain(job, error, again) {
  if (!["rate_limited", "server_error"].includes(error.code) || job.retries >= 5) return false;
  job.retries += 1;
  job.timer = setTimeout(again, backoff(job.retries - 1, 2000, 30_000));
  return true;
}

// --- Gaps ----------------------------------------------------------------------------
//
// A catch-up that ends above the newest message shown before the drop (its page limit
// reached after a long time away, refused, or cut short by another drop) leaves a hole:
// the messages between that one and the oldest the catch-up read are not on the page
// (keepRecent leaves one too, taking messages off above the newest ones while the list
// is scrolled up). A marker stands in the hole (an li.gap, data-after: the newest id
// above the hole, data-below: the oldest under it), whose "Show them" button reads the
// hole with GetHistory pages going down from data-below, each one's messages put in
// above the marker, until a page reaches data-after or GAP_PAGES are read. Any page that
// reads into a hole from its upper end (a later catch-up's too) narrows it, or closes it
// and takes the marker away. A reply's quote of a message in the hole says "Earlier
// message" until a page brings it, or reads past its id without it: deleted meanwhile,
// it is then quoted as any deleted message is (requote).
//
// A marker says why its messages are not shown (data-kind): missed while the page was
// away, or taken off by the page itself to bound its memory, though the person may well
// have read them. One that stands for both (trimNewest took messages off around a missed
// hole, and one marker took the place of both) lists both kinds, and says they were
// missed, true of both: some of them the person was never shown. A catch-up reads none
// of it (tookOff); its button reads the whole of it.
const GAP_NOTE = "Messages you missed are not shown here.";
const GAP_WORDS = {
  missed: { note: GAP_NOTE, them: "the messages you missed", one: "missed message" },
  trimmed: { note: "Some messages are not shown here to save memory.", them: "them again", one: "message" },
};
const kindsOf = (item) => item.dataset.kind.split(" ");
const wordsOf = (item) => GAP_WORDS[kindsOf(item).includes("missed") ? "missed" : "trimmed"];

function gapMarker(kind) {
  const item = gapItem(GAP_WORDS[kind].note);
  item.dataset.kind = kind;
  return item;
}

// Pages one "Show them" reads, as a catch-up does: three of the socket's READS_PER_MINUTE,
// so that previews and downloads keep theirs; the marker then stays for the rest.
const GAP_PAGES = 3;

function leaveGap(job) {
  if (!state.room || !job || job.whole || job.reached === null || holeEmpty(job.top, job.reached)) return;
  const item = gapMarker("missed");
  item.dataset.after = String(job.top);
  const list = $("messages");
  const said = "Some messages you missed are not shown. The “Show them” button in the list brings them.";
  const add = () => {
    placeGap(list, item, job.reached);
    requote(job.top, job.reached); // replies to its messages no longer take them for deleted ones
    return 1;
  };
  addQuietly(add, () => said);
}

// The marker sorts in by id like the unread divider, just above its data-below; a marker
// moved keeps the focus, and one already in its place stays (the log would read it out
// again).
function placeGap(list, item, below) {
  const focused = item.contains(document.activeElement);
  item.dataset.below = String(below);
  item.dataset.id = String(below - 0.5);
  if (item.isConnected && inOrder(item)) return;
  item.remove();
  insertById(list, item);
  if (focused) item.querySelector("button").focus({ preventScroll: true });
}

const gaps = () => [...document.querySelectorAll("#messages li.gap")];

// No message can be missing between the ids `after` and `below` when no id is: after
// exactly CHAT_HISTORY_LIMIT missed, say, the rejoin's History starts right above `after`.
const holeEmpty = (after, below) => below <= after + 1;

// The marked gap that holds the id `id`, or null.
function gapOf(id) {
  return gaps().find((item) => Number(item.dataset.after) < id && id < Number(item.dataset.below)) ?? null;
}

// A page held every message of the room from `oldest` (-Infinity: none left) up to
// `before` (excluded). A catch-up's left out those of a marker of messages the page took
// off (tookOff): that marker still stands for them.
function pageRead(before, oldest, { catchUp = false } = {}) {
  for (const item of gaps()) {
    if (catchUp && kindsOf(item).includes("trimmed")) continue;
    const [after, below] = [Number(item.dataset.after), Number(item.dataset.below)];
    if (before < below || oldest >= below) continue;
    if (holeEmpty(after, oldest)) closeGap(item);
    else placeGap($("messages"), item, oldest);
    // What the page read of the hole and did not get was deleted meanwhile: so say its quotes.
    requote(after, below);
  }
}

// The quotes of messages with an id between `after` and `below` (both excluded), said
// again: a gap placed, narrowed or closed there changes what the page knows of them
// (deletedOrGone).
function requote(after, below) {
  for (const quote of document.querySelectorAll("#messages .quote")) {
    const id = Number(quote.dataset.replyTo);
    if (after < id && id < below) quote.replaceChildren(...quoteText(id));
  }
}

// A marker closed while its button has the focus hands it to the first message read
// into its hole (the first after data-after, in reading order), so that a keyboard or
// screen reader user reads on from there, not below what was just brought; the view
// does not move for it.
function closeGap(item) {
  state.gapsWaiting = state.gapsWaiting.filter((other) => other !== item);
  if (state.gapFill?.item === item) stopGapFill();
  if (item.contains(document.activeElement)) {
    const after = Number(item.dataset.after);
    const first = [...$("messages").querySelectorAll("li.message[data-id]")].find((o) => Number(o.dataset.id) > after);
    if (first) {
      first.tabIndex = -1;
      first.focus({ preventScroll: true });
    }
  }
  removeMessageItem(item);
}

// Trimmed down to a marker (keepRecent), the hole is no longer between messages: older
// pages read it, as they read what was trimmed.
function dropLeadingGaps(list) {
  const leading = [];
  for (let item = list.firstElementChild; item && !item.matches("li.message"); item = item.nextElementSibling) {
    if (item.matches("li.gap")) leading.push(item);
  }
  leading.forEach(closeGap);
}

// One gap is read at a time: a marker pressed while another is read waits its turn, and
// says so (gapsWaiting). True when the gap is read or waits. Its pages count toward the
// socket's READS_PER_MINUTE like any: one refused for its rate is asked again later.
function fillGap(item) {
  if (state.gapFill?.item === item || state.gapsWaiting.includes(item)) return true;
  const button = item.querySelector("button");
  if (!state.room || state.rejoining || !connection.isOpen) {
    setAriaDisabled(button, false);
    gapNote(item, NOT_CONNECTED);
    return false;
  }
  setAriaDisabled(button, true);
  if (state.gapFill) {
    state.gapsWaiting.push(item);
    item.querySelector(".gap-note").textContent = `Waiting to show ${wordsOf(item).them}…`;
    return true;
  }
  state.gapFill = { item, retries: 0, timer: null, shown: 0, pages: 0 };
  item.querySelector(".gap-note").textContent = `Showing ${wordsOf(item).them}…`;
  readGap(state.gapFill);
  return true;
}

// A marker trimmed off the page (keepRecent) takes its reading with it.
function readGap(fill) {
  if (!fill.item.isConnected) return stopGapFill();
  const before = Number(fill.item.dataset.below);
  if (!send({ type: "GetHistory", before, limit: CATCH_UP_PAGE }, "gap", { fill })) stopGapFill(NOT_CONNECTED);
}

// A gap's reading ends (`problem`: why the rest of the hole is not read, said in its
// marker), and the first marker waiting (still on the page) is read.
function stopGapFill(problem = "") {
  const fill = state.gapFill;
  if (!fill) return;
  clearTimeout(fill.timer);
  state.gapFill = null;
  setAriaDisabled(fill.item.querySelector("button"), false);
  gapNote(fill.item, problem);
  const waiting = state.gapsWaiting.filter((item) => item.isConnected);
  state.gapsWaiting = [];
  for (const item of waiting) fillGap(item); // the first is read, the others wait again
}

// No gap is read any more, nor waits (the socket dropped, the room was left): each
// marker pressed says `problem`.
function stopGapFills(problem = "") {
  const waiting = state.gapsWaiting;
  state.gapsWaiting = [];
  stopGapFill(problem);
  for (const item of waiting) {
    setAriaDisabled(item.querySelector("button"), false);
    gapNote(item, problem);
  }
}

// A marker says that messages are missing there, and `problem`: why they are not read.
function gapNote(item, problem = "") {
  const note = wordsOf(item).note;
  item.querySelector(".gap-note").textContent = problem ? `${note} ${problem}` : note;
}

// In the room again: a marker's "Not connected" (its button pressed, or its reading cut
// short, while the socket was down) is over, as the message box's is; another problem stays.
function gapsReconnected() {
  for (const item of gaps()) if (item.querySelector(".gap-note").textContent.endsWith(NOT_CONNECTED)) gapNote(item);
}

// A page of the hole: its messages newer than data-after go in above the marker (what is
// in view stays where it is on screen, above the marker or below it); those shown
// already or deleted are not.
async function gapPage(request, m) {
  const fill = state.gapFill;
  if (!fill || request.fill !== fill || !state.room) return;
  if (!fill.item.isConnected) return stopGapFill();
  fill.retries = 0;
  const missed = m.messages.filter((message) => message.id > Number(fill.item.dataset.after));
  await addQuietly(
    () => receiveAll(missed, { older: true, gap: true }),
    (n) => `${count((fill.shown += n), wordsOf(fill.item).one)} shown.`,
  );
  if (state.gapFill !== fill) return;
  pageRead(m.before, m.messages.length ? m.messages[0].id : -Infinity);
  // A quoted message is shown once its page is in (or the gap is closed), not once the
  // whole gap is read.
  const closed = state.gapFill !== fill;
  if (state.seeking !== null && (closed || messageById(state.seeking))) showMessage(state.seeking);
  if (closed) return;
  fill.pages += 1;
  if (fill.pages < GAP_PAGES) return readGap(fill);
  // Further down than these pages: its quote is clicked again (one in a gap waiting is
  // shown once that one is read).
  if (gapOf(state.seeking) === fill.item) state.seeking = null;
  stopGapFill();
}

function gapRefused(request, error) {
  const fill = state.gapFill;
  if (!fill || request.fill !== fill) return;
  if (askedAgain(fill, error, () => state.gapFill === fill && readGap(fill))) return;
  state.seeking = null;
  stopGapFill(humanError(error));
}

// A chat message of ours the server refused (the request the Error answers: requests.js).
// Refused for its rate, it waits and is sent again, ahead of the later ones; else its
// text goes back to the person: into the message box when that is free, or stays on the
// page marked not sent. A file's card that cannot be sent: the file form says so.
function chatRefused(request, error) {
  const content = request.frame.content;
  const entry = state.outbox.get(content);
  if (!entry) return;
  entry.sent = false;
  if (error.code === "rate_limited") return holdChat(entry);
  state.outbox.delete(content);
  const box = $("message");
  if (entry.card) {
    entry.item.remove();
    showError("file-error", `${entry.card.name} was not shared: ${humanError(error)}`);
    setStatus("");
  } else if (!box.value && !conversation.composing()) {
    entry.item.remove();
    box.value = entry.text;
    showError("message-error", humanError(error));
  } else {
    entry.item.classList.add("refused");
    entry.item.removeAttribute("aria-hidden"); // no longer pending: it stays, with its buttons
    entry.item.querySelector(".note").textContent = `not sent: ${humanError(error)}`;
    offerBack(entry);
  }
  sendNext();
}

// A refused message that could not go back into the busy message box stays on the page
// with two ways out: back into the box (after what is there), or away.
function offerBack(entry) {
  const item = entry.item;
  const back = el("button", { text: "Put back in the box", className: "refused-action", attrs: { type: "button" } });
  const away = el("button", { text: "Discard", className: "refused-action", attrs: { type: "button" } });
  back.addEventListener("click", () => {
    const box = $("message");
    box.value = box.value ? `${box.value}\n${entry.text}` : entry.text;
    item.remove();
    box.focus();
  });
  away.addEventListener("click", () => {
    item.remove();
    $("message").focus();
  });
  item.querySelector(".meta").append(" ", back, " ", away);
}

function holdChat(entry) {
  state.chatRetries += 1;
  const wait = backoff(state.chatRetries - 1, 1000, 30_000);
  entry.item.querySelector(".note").textContent = `too many messages at once: sending again in ${wait / 1000} s…`;
  state.chatHeld = setTimeout(() => {
    state.chatHeld = null;
    sendNext();
  }, wait);
}

$("message-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sendChat();
});

$("message").addEventListener("keydown", (event) => {
  if (conversation.composerKey(event)) return;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendChat();
  }
});

$("leave").addEventListener("click", () => {
  exitRoom();
  leaveOnServer();
});

// Leaving closes the socket (which leaves the room) for a new one rather than sending
// LeaveRoom, which is answered only when there is no room to leave (a rejoin in flight
// may have failed), so no Error after it could be told apart; and nothing the old socket
// would still answer (that rejoin's RoomJoined) reaches the page.
function leaveOnServer() {
  requests.dropped();
  connection.restart();
}

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
  inRoom: () => Boolean(state.room) && !state.rejoining,
});

const conversation = setUpConversation({
  rights,
  lastEditable,
  react,
  remove: removeMessage,
  members: () => state.members,
  me: () => state.room?.name,
  // Never answered in a room, so not a request (requests.js): no Error is taken for it.
  sendTyping: () => !state.rejoining && connection.send({ type: "Typing" }),
});

const unread = setUpUnread();

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
      participant_token: room.participantToken,
    },
    "rejoin",
  );
}

function onOpen() {
  if (state.room) {
    setStatus("Reconnected. Catching up…");
    rejoin();
  } else if (state.queued) {
    setStatus("");
  }
  if (state.queued) send(state.queued.message, state.queued.context);
  state.queued = null;
}

// Another tab or window took this participant over (close 4003): this page steps back
// to the lobby and stays off the socket until the person acts, so that the two do not
// take the seat from each other in turns.
function onReplaced() {
  connectionLost();
  exitRoom("You opened this room in another tab or window.");
}

function onDrop(event, wait) {
  connectionLost();
  if (state.room) setStatus(`Connection lost. Reconnecting in ${Math.ceil(wait / 1000)} s…`);
}

// The socket is gone: nothing it carried will be answered. `refused`: a request whose
// Error said so (not_in_room), with those still in flight.
function connectionLost(refused = []) {
  const lost = [...refused, ...requests.dropped()];
  if (state.pending) {
    showError(`${state.pending}-error`, "No connection to the server. Try again in a moment.");
    state.queued = null;
    endPending();
  }
  files.connectionLost();
  // A GetHistory in flight is answered on no socket now: the button comes back.
  state.seeking = null;
  if (state.olderPending) olderArrived(false);
  // An edit being saved is given back, to save again once reconnected.
  if (lost.some((request) => request.context === "edit")) {
    conversation.editDone("refused");
    showError("message-error", "Not connected. Your edit is kept; save it again once reconnected.");
  }
  // A catch-up cut short leaves its hole marked: the next one starts above it.
  leaveGap(state.catchUp);
  stopCatchUp();
  stopGapFills(NOT_CONNECTED);
  // Perhaps never stored: not shown as sent, and sent again after the rejoin (resendPending).
  state.catchingUp = false;
  for (const entry of state.outbox.values()) {
    entry.sent = false;
    entry.item.querySelector(".note").textContent = NOT_SENT;
  }
}

// The server has no room for this socket while the page shows one (it found the seat
// gone, say): a new socket rejoins, as after any drop, and sends again what was pending.
function rejoinAfresh(request) {
  connectionLost(request ? [request] : []);
  setStatus("Rejoining the room…");
  connection.restart();
}

function rejoinFailed(error) {
  // Someone else holds our name. Perhaps a participant whose process died, until the
  // presence sweep frees it (config.ghost_seconds at most): retried that long, and then
  // the person picks another name.
  if (error.code === "name_taken") {
    state.nameTakenSince ??= Date.now();
    if (Date.now() - state.nameTakenSince >= config.ghost_seconds * 1000) return nameLost();
  }
  if (error.code === "name_taken" || error.code === "rate_limited" || error.code === "server_error") {
    state.rejoinAttempts += 1;
    const wait = backoff(state.rejoinAttempts, 1000, 15_000);
    setStatus(`Rejoining the room: ${humanError(error)} Retrying in ${Math.ceil(wait / 1000)} s…`);
    setTimeout(() => state.room && connection.isOpen && rejoin(), wait);
    return;
  }
  exitRoom(humanError(error));
}

// Back to the join form, filled in as the room was joined, with the name to change.
function nameLost() {
  const { name, password } = state.room;
  const link = $("share-link").value;
  exitRoom(`Someone else in the room now uses the name ${name}.`);
  if (!config.join_key) $("join-key").value = link;
  $("join-password").value = password || "";
  $("join-name").value = name;
  showError("join-name-error", "Pick another name to join the room again.");
  $("join-name").focus();
}

// An Error answers the oldest frame of ours not answered yet (requests.js), and is shown
// next to what that frame was for; room_closed and kicked end the room whatever was sent.
function onError(error) {
  if (ROOM_ENDED.has(error.code)) {
    if (!state.room) return showError("lobby-error", humanError(error));
    exitRoom(humanError(error));
    return leaveOnServer();
  }
  const request = requests.refused();
  const context = request?.context ?? null;
  if (context === "create" || context === "join") {
    if (state.pending !== context) return;
    endPending();
    const unasked = context === "join" && error.code === "wrong_password" && !$("join-password").value;
    return showError(errorPlace(context, error), unasked ? NEEDS_PASSWORD : humanError(error, context));
  }
  if (context === "rejoin") return state.rejoining && state.room && rejoinFailed(error);
  if (context === "members") return askMembersLater(); // refused for its rate, say
  if (error.code === "not_in_room" && state.room) return rejoinAfresh(request);
  if (files.handleError(error, request)) return;
  if (context === "chat") return chatRefused(request, error);
  if (context === "edit") conversation.editDone(error.code === "message_not_found" ? "gone" : "refused");
  if (context === "catch-up") return catchUpRefused(request, error);
  if (context === "gap") return gapRefused(request, error);
  if (context === "history") {
    state.seeking = null;
    if (error.code === "rate_limited") holdOlder();
    olderArrived(false);
  }
  showError(state.room ? errorPlace(context, error) : "lobby-error", humanError(error, context));
}

const HANDLERS = {
  // A room the page asked for, never one the server offers unasked to a page in a room.
  // Out of the lobby's request, an answer that came as its socket dropped (handled after
  // the drop gave the request up) still enters the room, and is checked all the same.
  RoomCreated: async (m) => {
    if (!requests.answered("CreateRoom") && state.room) return;
    await enterRoom(m, m.owner_token);
    if (state.room) reachedStart(); // a new room: nothing is older than what comes
  },
  RoomJoined: async (m) => {
    const request = requests.answered("JoinRoom");
    if (!request && state.room) return;
    if (request?.context === "rejoin") {
      if (!(state.room && state.rejoining)) return;
      if (!sameSeat(state.room, m)) {
        exitRoom(REJOIN_CHANGED);
        return leaveOnServer();
      }
      state.rejoining = false;
      state.rejoinAttempts = 0;
      state.nameTakenSince = null;
      state.room.participantToken = m.participant_token ?? state.room.participantToken;
      listMembers(m.participants);
      setStatus("Reconnected to ", isolated(m.room_info.name), ".");
      // A "Not connected" said while it was down is over; another error stays.
      if ($("message-error").textContent.startsWith("Not connected")) showError("message-error", "");
      gapsReconnected();
      files.resume();
      // The History, if any, comes before the answer to the catch-up's first GetHistory
      // (frames are answered in order).
      return catchUp();
    }
    await enterRoom(m, state.draft?.ownerToken ?? null);
    state.joinHistoryDue = Boolean(state.room);
  },
  // The join's (or a rejoin's) History, or a page of older messages (`before`).
  History: async (m) => {
    const older = m.before !== undefined;
    const request = older ? requests.answered("GetHistory") : null;
    if (request?.context === "catch-up") return catchUpPage(request, m);
    if (request?.context === "gap") return gapPage(request, m);
    // A rejoin's History brings what was missed (told with its catch-up's); a join's, what
    // was said before.
    const job = state.catchUp;
    if (job && !older) rejoinHistory(job, m.messages);
    const kind = older ? "older message" : "earlier message";
    await addQuietly(() => receiveAll(m.messages, { older }), (n) => (job ? toldMissed(job, n) : `${count(n, kind)}.`));
    if (older) {
      state.olderRetries = 0;
      // A page short of what was asked for holds the room's first message: none is older.
      const start = m.messages.length < (request?.frame.limit ?? 1);
      olderArrived(start);
      // What it read and did not get (and at the start, anything older) was deleted: so
      // say its quotes (deletedOrGone).
      requote(start ? -Infinity : m.messages[0].id, m.before);
    }
  },
  ChatMessage: (m) => {
    requests.answered("ChatMessage", (frame) => frame.content === m.content);
    return receiveMessage(m, { live: true });
  },
  MessageEdited: (m) => {
    if (requests.answered("EditMessage", (frame) => frame.id === m.id)) conversation.editDone("stored");
    return messageEdited(m);
  },
  Reactions: (m) => {
    requests.answered("React", (frame) => frame.id === m.id);
    const item = messageById(m.id);
    if (item && state.room) renderReactions(item, m.reactions, state.room.name);
  },
  Typing: (m) => state.room && conversation.typing(m.name),
  ParticipantJoined: (m) => {
    if (!state.room || state.members.includes(m.name)) return;
    setMembers([...state.members, m.name]);
    announce(isolated(m.name), " joined.");
  },
  ParticipantLeft: (m) => {
    if (!state.room) return;
    if (state.members.includes(m.name) && m.name !== state.room.name) announce(isolated(m.name), " left.");
    setMembers(state.members.filter((name) => name !== m.name));
    conversation.notTyping(m.name);
  },
  Members: (m) => {
    requests.answered("GetMembers");
    if (state.room) listMembers(m.participants);
  },
  MessageDeleted: (m) => {
    requests.answered("DeleteMessage", (frame) => frame.id === m.id);
    messageDeleted(m.id);
  },
  FileUploaded: (m) => {
    requests.answered("UploadFile");
    files.uploaded(m.metadata);
  },
  // Only the file asked for (a standard room's preview): a sealed room's files are fetched
  // and checked against their cards, and a FileContent the server sends unasked is ignored.
  FileContent: (m) => {
    if (!requests.answered("GetFile", (frame) => frame.file_id === m.metadata.id)) return;
    files.content(m.metadata, m.content);
  },
  FileDeleted: (m) => {
    requests.answered("DeleteFile", (frame) => frame.file_id === m.file_id);
    files.deleted(m.file_id);
  },
  Error: onError,
};

// Its author, an owner or a moderator deleted a message (or a catch-up found it gone): it
// goes from the page; its id stays seen, so History after a reconnect cannot bring it back.
function messageDeleted(id) {
  state.seen.add(id);
  state.deleted.add(id);
  if (state.deleted.size > DELETED_KEPT) forgetDeleted();
  state.room?.frames.delete(id);
  conversation.forget(id);
  const item = messageById(id);
  if (item) {
    forgetCard(item);
    removeMessageItem(item);
  }
  for (const quote of quotesOf(id)) quote.textContent = quoteOf(null);
}

// The page remembers the newest DELETED_KEPT deletes, not every one made while it was
// open: a History that crossed a delete is one of a moment ago, and a quote of a message
// deleted longer ago says "Earlier message", or "Deleted message" once the page can tell
// (deletedOrGone), as for one deleted before the page came.
const DELETED_KEPT = MESSAGES_KEPT;

function forgetDeleted() {
  const [oldest] = state.deleted;
  state.deleted.delete(oldest);
  state.seen.delete(oldest);
}

// A message (or a gap's marker) leaves the page: the focus in it goes to the next
// message's actions button, else the one before's, else the list; never to the page's
// body. What is in view stays where it is on screen (keepingView).
function removeMessageItem(item) {
  if (item.contains(document.activeElement)) {
    (actionsNear(item, "nextElementSibling") ?? actionsNear(item, "previousElementSibling") ?? $("messages")).focus();
  }
  keepingView($("messages"), () => item.remove());
}

function actionsNear(item, direction) {
  for (let other = item[direction]; other; other = other[direction]) {
    const button = other.querySelector(".message-actions");
    if (button) return button;
  }
  return null;
}

// An edit: the new text replaces the old one, read like any message (a sealed room's
// edit opens only under the original sender's name). Edits of messages not on the page
// are left to History, which carries the latest content.
async function messageEdited(m) {
  const room = state.room;
  const locked = room?.frames.get(m.id);
  if (locked) Object.assign(locked, { content: m.content, edited_at: m.edited_at });
  const item = messageById(m.id);
  if (item) item.dataset.editedAt = m.edited_at;
  if (!room || !item?.classList.contains("chat-text")) return;
  const body = await readBody(room, { id: m.id, sender: item.dataset.sender, content: m.content, edited_at: m.edited_at });
  if (state.room !== room || !item.isConnected) return;
  if (body.text === undefined) {
    item.classList.replace("chat-text", "undecryptable");
    item.querySelector(".text").textContent = "This edit could not be read.";
  } else {
    setText(item, body.text, item.classList.contains("mine") ? null : room.name);
  }
  markEdited(item);
  fillQuotes(item);
}

// One frame at a time, in order: entering a room awaits the key import, and the
// History right behind RoomJoined must wait for it.
let inbox = Promise.resolve();

function onMessage(message) {
  inbox = inbox
    .then(() => {
      joinHistoryCame(message);
      return HANDLERS[message.type]?.(message);
    })
    .catch((error) => console.error(error));
}

// The frame right behind a join's RoomJoined. Its History holds the newest
// CHAT_HISTORY_LIMIT messages, and is left out when there are none: fewer, or none,
// and the page shows the start of the room instead of a button for older ones.
function joinHistoryCame(message) {
  if (!state.joinHistoryDue) return;
  state.joinHistoryDue = false;
  if (!(message.type === "History" && message.messages.length >= config.history_limit)) reachedStart();
}

// The lobby's buttons come disabled in the page, so that no form is sent natively (as a
// GET with its password in the address) before this script has taken them over.
endPending();

// A share link asks only for a name, and for a password when the room has one.
if (config.join_key) {
  $("join-password-field").hidden = config.has_password === false;
  if (config.has_password === null) showError("join-key-error", humanError({ code: "room_not_found" }));
  askForWholeLink();
  $("join-name").value = savedName(config.join_key);
  $("join-name").focus();
  connection.hint = await affinityHint(config.join_key);
}
connection.open();
