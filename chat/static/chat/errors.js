// Every protocol error code (PROTOCOL.md, "Error codes") in words for people, the
// place on the page it belongs next to, and how long to wait before trying again.

const HUMAN = {
  invalid_json: "The server could not read what the page sent. Reload the page.",
  unknown_type: "The server did not understand that request. Reload the page.",
  invalid_field: "That value is not accepted.",
  not_in_room: "You are not in a room any more.",
  already_in_room: "You are already in a room. Leave it first.",
  room_not_found: "No open room has this join key. Check the key or the link.",
  wrong_password: "Wrong password for this room.",
  name_taken: "Someone in the room already uses this name. Pick another one.",
  rate_limited: "Too many attempts in a short time. Wait a moment, then try again.",
  message_too_large: "This message is too long to send. Shorten it or split it.",
  file_too_large: "This file is too large to share.",
  mime_not_allowed: "This type of file may not be shared here.",
  quota_exceeded: "The room has no space left for files. Delete some first.",
  file_not_found: "File not found or expired.",
  message_not_found: "That message is not in this room any more.",
  forbidden: "You are not allowed to do that.",
  room_closed: "An administrator closed this room.",
  kicked: "An administrator removed you from the room.",
  server_error: "Something went wrong on the server. Try again.",
};

// Where one code means something else for one kind of request (`context`).
const HUMAN_IN = {
  react: { quota_exceeded: "This message has as many different reactions as it can hold. Pick one it already has." },
};

// A field's name in invalid_field's message ("owner_name: holds ...") as the page labels it.
const FIELD_LABELS = {
  create: { name: "Room name", owner_name: "Your name" },
  join: { name: "Your name" },
};
const LABELS = { content: "Message", join_key: "Join key", emoji: "Emoji", description: "Description", password: "Password" };

function labelled(message, context) {
  const [, field, rest] = /^(\w+): (.*)$/s.exec(message) ?? [];
  if (!field) return message;
  const label = FIELD_LABELS[context]?.[field] ?? LABELS[field] ?? field[0].toUpperCase() + field.slice(1).replaceAll("_", " ");
  // "Your name holds a control character."; "Name: 1 to 255 characters."
  return /^\p{Ll}/u.test(rest) ? `${label} ${rest}` : `${label}: ${rest}`;
}

export function humanError(error, context = null) {
  const text = HUMAN_IN[context]?.[error.code] ?? HUMAN[error.code];
  if (!text) return error.message || "Something went wrong.";
  // These messages say more than the code: invalid_field starts with the field's name
  // (shown as the page labels it), and forbidden says what was refused (a delete, a ban
  // after removal, the virus scanner).
  if (error.code === "invalid_field" && error.message) return labelled(error.message, context);
  if (error.code === "forbidden" && error.message) return error.message;
  // And a creation or a join refused for its rate says which limit, and so how long to
  // wait: rooms per hour ("a while") is not wrong passwords or joins ("a minute").
  if (error.code === "rate_limited" && (context === "create" || context === "join") && error.message) {
    return error.message;
  }
  return text;
}

// Errors that end the room whatever frame they come after: an admin closed it or removed
// this participant (sent to the socket unasked, then closing it).
export const ROOM_ENDED = new Set(["room_closed", "kicked"]);

// The element id an error shows next to: the field it is about, else the form's own line.
const FIELD_ERRORS = {
  create: { name: "create-name", description: "create-description", password: "create-password", owner_name: "create-owner" },
  join: { join_key: "join-key", password: "join-password", name: "join-name" },
};
const CODE_FIELDS = { room_not_found: "join_key", wrong_password: "password", name_taken: "name" };

export function errorPlace(context, error) {
  const fields = FIELD_ERRORS[context];
  if (fields) {
    const field = CODE_FIELDS[error.code] ?? /^(\w+):/.exec(error.message ?? "")?.[1];
    if (field && fields[field]) return `${fields[field]}-error`;
    return `${context}-error`;
  }
  // What is done to messages: sending, editing, deleting, reacting, older history.
  if (["chat", "edit", "delete", "react", "history"].includes(context)) return "message-error";
  if (context === "upload" || context === "file") return "file-error";
  return "lobby-error";
}

// The wait before retry `attempt` (0: the first) after refusals or drops in a row:
// `first` milliseconds, doubling each time, never over `most`.
export function backoff(attempt, first, most) {
  return Math.min(most, first * 2 ** Math.max(0, attempt));
}
