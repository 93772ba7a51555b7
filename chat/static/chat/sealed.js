// Sealed rooms as PROTOCOL.md, "Sealed rooms", says: the room secret lives only in the
// share link's fragment (#k=...), which browsers never send to a server. Every key comes
// from it through WebCrypto's HKDF-SHA256 (RFC 5869, empty salt); the Python client
// (chatclient/crypto.py) derives the same with `cryptography`, and the tests check both
// ways (tests/browser/test_sealed.py).

import { fromBase64, toBase64 } from "./crypto.js";

const SECRET_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const encoder = new TextEncoder();
// A byte order mark is kept, so that JSON.parse refuses it as the Python client does.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const FILE_AD = encoder.encode("roomchat/v1/file");
const SECRET_TEXT = /^[A-Za-z0-9_-]{43}$/;

export const INCOMPLETE_LINK = "This link is incomplete: ask for the whole link.";
export const UNSEALED_ANSWER =
  "The server answered as if this sealed room were not sealed, which would let it read the room. Nothing was sent.";
export const KEY_CHECK_CHANGED =
  "The server answered with another key check than this page sent, so the room's link would not open it. Nothing was sent.";
export const REJOIN_CHANGED =
  "On reconnecting, the server put you in another room or under another name. Nothing more was sent.";

// Unicode's White_Space at either end of a name: what the server trims names of.
const WHITE_SPACE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const NAME_EDGES = new RegExp(`^[${WHITE_SPACE}]+|[${WHITE_SPACE}]+$`, "g");

// Near Python's casefold, which the server compares by: "ẞob", "ßob" and "SSOB" all fold
// to "ssob" (upper case alone leaves "ẞ").
function folded(name) {
  return name.toLowerCase().toUpperCase().toLowerCase();
}

// The server's answer to a CreateRoom or JoinRoom, checked against what was asked:
// `sealed` (a secret is held, or this is a sealed room's page), `keyCheck` (the one a
// CreateRoom sent, which the room must keep), `name`, and `resuming` (a participant token
// went with it, whose name comes back as it was first given, compared by case). A server
// that answers a sealed room as a standard one could read everything typed next, and one
// that changes the name has the page's messages sealed under someone else's
// (PROTOCOL.md, "Sealed rooms"): the problem in words, or null.
export function answerProblem(message, asked) {
  const info = message.room_info;
  if (asked.sealed && !(info.sealed === true && message.encryption_key == null)) return UNSEALED_ANSWER;
  if (asked.keyCheck && info.key_check !== asked.keyCheck) return KEY_CHECK_CHANGED;
  const name = asked.name.normalize("NFC").replace(NAME_EDGES, "");
  const given = message.name;
  const same = typeof given === "string" && (asked.resuming ? folded(given) === folded(name) : given === name);
  return same ? null : `The server gave you another name than ${name}. Nothing was sent.`;
}

// A rejoin's answer (RoomJoined) puts the page back in the same room under the same name.
export function sameSeat(room, message) {
  const [before, after] = [room.info, message.room_info];
  return (
    after.id === before.id &&
    after.sealed === before.sealed &&
    after.key_check === before.key_check &&
    message.name === room.name
  );
}

export function newSecret() {
  return crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
}

function toBase64Url(bytes) {
  return toBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

// "k=" and the secret as base64url without padding (43 characters).
export function fragmentOf(secret) {
  return `k=${toBase64Url(secret)}`;
}

// The secret in a fragment ("#k=..." or "k=..."), or null when it is missing or not whole:
// the first `k` parameter whose value is a whole secret, read as the Python client reads
// it (chatclient/crypto.py, secret_from_link), with nothing percent-decoded, so that one
// link never opens as two different secrets in the two clients.
export function secretFromFragment(fragment) {
  for (const part of fragment.replace(/^#/, "").split("&")) {
    const equals = part.indexOf("=");
    const text = part.slice(equals + 1);
    if (equals < 0 || part.slice(0, equals) !== "k" || !SECRET_TEXT.test(text)) continue;
    const secret = fromBase64(text.replaceAll("-", "+").replaceAll("_", "/") + "=");
    // The last character must carry no stray bits: the text is the secret's one spelling.
    if (secret.length === SECRET_BYTES && toBase64Url(secret) === text) return secret;
  }
  return null;
}

async function hkdf(secret, info, length) {
  const base = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: encoder.encode(info) },
    base,
    length * 8,
  );
  return new Uint8Array(bits);
}

// {messageKey (a CryptoKey), keyCheck (base64 of 16 bytes)} for a room secret.
export async function deriveKeys(secret) {
  const raw = await hkdf(secret, "roomchat/v1/message-key", 32);
  const messageKey = await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  return { messageKey, keyCheck: toBase64(await hkdf(secret, "roomchat/v1/key-check", 16)) };
}

function associatedData(roomId, sender) {
  return encoder.encode(`roomchat/v1|${roomId}|${sender}`);
}

async function seal(key, plain, additionalData, nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))) {
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData }, key, plain));
  const out = new Uint8Array(NONCE_BYTES + sealed.length);
  out.set(nonce);
  out.set(sealed, NONCE_BYTES);
  return out;
}

async function open(key, raw, additionalData) {
  if (raw.length < NONCE_BYTES + TAG_BYTES) throw new Error("too short");
  return new Uint8Array(
    await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: raw.subarray(0, NONCE_BYTES), additionalData },
      key,
      raw.subarray(NONCE_BYTES),
    ),
  );
}

// A message's content: the payload ({t: "text", body} or a file card) sealed under the
// message key and bound to the room and to the sender's name as the server stored it.
export async function sealMessage(messageKey, roomId, sender, payload) {
  const plain = encoder.encode(JSON.stringify(payload));
  return toBase64(await seal(messageKey, plain, associatedData(roomId, sender)));
}

// The payload of a message from `sender` as the server delivered it; throws when it does
// not verify (another key, or a sender the server changed), or is not PROTOCOL.md's
// strict JSON, which the Python client refuses too (chatclient/wire.py).
export async function openMessage(messageKey, roomId, sender, content) {
  const plain = await open(messageKey, fromBase64(content), associatedData(roomId, sender));
  const payload = JSON.parse(decoder.decode(plain));
  if (typeof payload !== "object" || payload === null || typeof payload.t !== "string") {
    throw new Error("not a sealed message");
  }
  checkStrict(payload, 1);
  return payload;
}

// As deep as the server lets a client nest, and no lone surrogate in a string.
const MAX_DEPTH = 32;
const LONE_SURROGATE = /\p{Cs}/u;

function checkStrict(value, depth) {
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new Error("a string holds a lone surrogate");
  } else if (typeof value === "object" && value !== null) {
    if (depth > MAX_DEPTH) throw new Error("nested too deep");
    for (const [key, item] of Object.entries(value)) {
      checkStrict(key, depth);
      checkStrict(item, depth + 1);
    }
  }
}

// A file for a sealed room: {key: its own file key (base64), blob: nonce || ciphertext || tag}.
export async function sealFile(bytes) {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const key = await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt"]);
  return { key: toBase64(raw), blob: await seal(key, bytes, FILE_AD) };
}

// The file's bytes, checked against the size and sha256 its card gives; throws otherwise.
export async function openFile(card, blob) {
  const key = await crypto.subtle.importKey("raw", fromBase64(card.key), { name: "AES-GCM" }, false, ["decrypt"]);
  const bytes = await open(key, blob, FILE_AD);
  if (bytes.length !== card.size || (await sha256Hex(bytes)) !== card.sha256) {
    throw new Error("the file does not match its card");
  }
  return bytes;
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

// Types never shared or opened from a sealed room, whatever a card says: the clients
// apply the never-html-or-svg rule there (PROTOCOL.md; chatclient's NEVER_SHARED).
const NEVER_SHARED = new Set(["text/html", "application/xhtml+xml", "image/svg+xml", "text/xml"]);
const FILE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FILE_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/; // standard base64 of 32 bytes

export function baseType(mimeType) {
  return mimeType.split(";")[0].trim().toLowerCase();
}

export function neverShared(mimeType) {
  return NEVER_SHARED.has(baseType(mimeType));
}

// A file card as PROTOCOL.md has it, of a type the server would take in a standard room
// (`allowedTypes`, its files_allowed_mime_types) and never html or svg. Its id goes into
// a URL, so it must be a file id and nothing else; its key is AES-256's, as PROTOCOL.md
// has it (WebCrypto would take a 16-byte key as AES-128).
export function isCard(payload, allowedTypes) {
  return (
    ["id", "name", "mime_type", "sha256", "key"].every((field) => typeof payload[field] === "string") &&
    Number.isSafeInteger(payload.size) &&
    payload.size >= 0 &&
    FILE_ID.test(payload.id) &&
    FILE_KEY.test(payload.key) &&
    allowedTypes.includes(baseType(payload.mime_type)) &&
    !neverShared(payload.mime_type)
  );
}

// A join key as the server draws them (secrets.token_urlsafe, chat/services.py):
// base64url, at most 64 characters (chat/models.py). A share link is found wherever it
// sits in what was pasted, with or without its scheme and host, with or without the
// slash before "#": "rooms/", the key, then its fragment's own characters and nothing
// that would make it another address.
const JOIN_KEY = /^[A-Za-z0-9_-]{1,64}$/;
const SHARE_LINK = /(?:^|[\s/])rooms\/([A-Za-z0-9_-]{1,64})\/?(#[\w=&-]*)?(?![\w/%?#&=-])/;

export const NOT_A_LINK = "This is not a valid join key or invitation link: check what you pasted.";

// {joinKey, secret (null when the fragment is missing or cut short)} of a share link, or
// null for text that holds none (a bare join key, say).
export function shareLinkParts(text) {
  const match = SHARE_LINK.exec(text);
  if (!match) return null;
  return { joinKey: match[1], secret: match[2] ? secretFromFragment(match[2]) : null };
}

// The join key in what was typed in the lobby: a share link's, or the text itself when it
// is a bare join key; null for anything else, which must never reach the server (a
// fragment in it would be the room's secret). A room's secret alone, copied from the
// link without its `k=`, looks like a join key (join keys are 22 characters, secrets 43):
// it is refused too.
export function joinKeyOf(text) {
  const link = shareLinkParts(text);
  if (link) return link.joinKey;
  return JOIN_KEY.test(text) && secretFromFragment(`k=${text}`) === null ? text : null;
}
