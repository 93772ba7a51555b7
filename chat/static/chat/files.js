// Files: checks before sending, upload progress, download links, image previews, delete.
// In a sealed room a file is encrypted here before it is sent, and fetched, decrypted
// and checked against its card here before it is offered or previewed (PROTOCOL.md).

import { fromBase64, toBase64 } from "./crypto.js";
import { backoff, humanError } from "./errors.js";
import { ariaDisabled, el, setAriaDisabled } from "./render.js";
import { baseType, INCOMPLETE_LINK, openFile, sealFile, sha256Hex } from "./sealed.js";
import { atBottom } from "./unread.js";

const $ = (id) => document.getElementById(id);
const PREVIEW_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const TYPE_BY_EXTENSION = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  pdf: "application/pdf",
  txt: "text/plain",
  zip: "application/zip",
};

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// Every byte: "10,485,761 bytes".
function exactSize(bytes) {
  return `${bytes.toLocaleString("en-US")} bytes`;
}

// Other names browsers give these types (Chrome and Edge on Windows name a zip file
// application/x-zip-compressed): checked and sent under the name the server knows.
const TYPE_ALIASES = {
  "application/x-zip-compressed": "application/zip",
  "image/pjpeg": "image/jpeg",
  "image/x-png": "image/png",
};

function typeOf(file) {
  const declared = (file.type || "").split(";")[0].trim().toLowerCase();
  if (declared) return TYPE_ALIASES[declared] ?? declared;
  const extension = /\.([a-z0-9]+)$/i.exec(file.name)?.[1]?.toLowerCase();
  return TYPE_BY_EXTENSION[extension] ?? "";
}

// The page refuses what the server would refuse, before reading a byte.
export function checkFile(file, config) {
  if (!file) return "Choose a file first.";
  if (file.size === 0) return "This file is empty.";
  if (file.size > config.files_max_size) {
    let [size, limit] = [formatSize(file.size), formatSize(config.files_max_size)];
    // Just over the limit both round the same ("10.0 MiB"): the bytes then tell them apart.
    if (size === limit) [size, limit] = [exactSize(file.size), exactSize(config.files_max_size)];
    return `This file is too large (${size}); the limit is ${limit}.`;
  }
  const type = typeOf(file);
  if (!config.files_allowed_mime_types.includes(type)) {
    return `Files of type ${type || "unknown"} may not be shared here. Allowed: ${config.files_allowed_mime_types.join(", ")}.`;
  }
  return null;
}

// Whether `bytes` are what `type` says, as the server checks a standard room's upload
// (files/validation.py, bytes_match; `signatures` is the page's files_signatures).
export function contentsAre(type, bytes, signatures) {
  if (type === "text/plain") {
    if (bytes.includes(0)) return false;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      return true;
    } catch {
      return false;
    }
  }
  const ascii = (start, end) => String.fromCharCode(...bytes.subarray(start, end));
  if (type === "image/webp") return ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP";
  const hex = Array.from(bytes.subarray(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return (signatures[type] ?? []).some((signature) => hex.startsWith(signature));
}

// Link syntax and every control, format (bidirectional, zero-width...) or line/paragraph
// separator character, which could disguise a name.
const HIDDEN = /[[\]()\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

// `name` as the server names a standard room's files (files/validation.py, shown_name):
// without what could disguise it, and ending in an extension of its type, appended when
// it ends in none (`extensions`: the page's files_extensions): `x.html` as text/plain is
// `x.html.txt`.
export function shownName(name, mimeType, extensions) {
  const shown = name.replace(HIDDEN, "");
  const endings = extensions[baseType(mimeType)] ?? [".bin"];
  const stem = shown.trimEnd();
  if (endings.some((ending) => stem.toLowerCase().endsWith(ending))) return shown;
  return (stem || "file") + endings[0];
}

class FileGone extends Error {}
class TooLarge extends Error {}

const SEALED_OVERHEAD = 28; // nonce and tag

// A sealed file's blob over HTTP (the session cookie says who asks), with progress; never
// more than `limit` bytes are kept (the card says how large the file is).
async function fetchBlob(fileId, limit, onProgress) {
  let response;
  try {
    response = await fetch(`/files/${fileId}`, { credentials: "same-origin", cache: "no-store" });
  } catch {
    throw new Error("The file could not be fetched. Check the connection and try again.");
  }
  if (response.status === 404) throw new FileGone("This file has expired or was deleted.");
  if (!response.ok) throw new Error(`The server could not send this file (${response.status}). Try again.`);
  const total = Number(response.headers.get("Content-Length")) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    loaded += value.length;
    if (loaded > limit) {
      reader.cancel();
      throw new TooLarge();
    }
    chunks.push(value);
    if (total) onProgress(loaded / total);
  }
  const blob = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    blob.set(chunk, offset);
    offset += chunk.length;
  }
  return blob;
}

// A sealed file's bytes, only once they open under the card's key and match its size and
// sha256: anything else is refused, and nothing is offered.
async function openSealed(card, onProgress = () => {}) {
  const refused = new Error(`${card.name} does not match what was shared: it was refused and nothing was saved.`);
  let blob;
  try {
    blob = await fetchBlob(card.id, card.size + SEALED_OVERHEAD, onProgress);
  } catch (error) {
    throw error instanceof TooLarge ? refused : error;
  }
  try {
    return await openFile(card, blob);
  } catch {
    throw refused;
  }
}

function readWithProgress(file, onProgress) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    reader.onload = () => resolve(new Uint8Array(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(file);
  });
}

// Image previews: only of images in view, PREVIEWS_AT_ONCE at a time. A standard room's
// come with GetFile, which counts toward the socket's READS_PER_MINUTE (60, shared with
// GetHistory and GetMembers): previews take at most PREVIEW_READS_PER_MINUTE of them, and
// one refused for its rate pauses them all, longer each time, before it is asked again.
// A sealed room's come over HTTP (/files/<id>), decrypted here.
const PREVIEWS_AT_ONCE = 2;
const PREVIEW_READS_PER_MINUTE = 40;

export function setUpFiles({ config, send, connection, showError, currentRoom, postCard, inRoom }) {
  let upload = null; // {name, timer, card}: card, a sealed room's file card without its id
  const blobUrls = new Map();
  const deletedIds = new Set();
  // Files this page uploaded: their uploader may delete them (and owners may delete any).
  // The right is the participant's, which a reconnect resumes, so it is kept until the
  // room is left.
  const mine = new Set();
  const fileOf = new WeakMap(); // a watched item -> its file ({id, name, card?})
  const wanted = new Map(); // file id -> file: in view, not previewed nor asked for yet
  const fetching = new Map(); // file id -> file: asked for, no answer yet
  const reads = []; // when this socket's last GetFile frames were sent
  let paused = null; // the timer while previews wait (the rate, or their share of reads)
  let pauses = 0; // rate_limited in a row
  let generation = 0; // a reset forgets the sealed previews being fetched
  const inView = new IntersectionObserver(
    (entries) => {
      for (const { target, isIntersecting } of entries) {
        const file = fileOf.get(target);
        if (isIntersecting) wanted.set(file.id, file);
        else wanted.delete(file.id);
      }
      pump();
    },
    { root: $("messages"), rootMargin: "200px 0px" },
  );

  function progress(label, fraction) {
    $("upload").hidden = false;
    $("upload-label").textContent = label;
    $("upload-progress").value = Math.round(fraction * 100);
  }

  function finish(error) {
    if (upload) clearInterval(upload.timer);
    upload = null;
    $("upload").hidden = true;
    setAriaDisabled($("file-form").querySelector("button[type=submit]"), false);
    showError("file-error", error ?? "");
  }

  async function start(file) {
    showError("file-error", "");
    if (upload) return showError("file-error", "Wait for the current upload to finish.");
    const problem = checkFile(file, config);
    if (problem) return showError("file-error", problem);
    if (!connection.isOpen) return showError("file-error", "Not connected. Try again once reconnected.");
    upload = { name: file.name, file, timer: null };
    setAriaDisabled($("file-form").querySelector("button[type=submit]"), true);
    // Reading and encoding take the first half of the bar, sending the second.
    progress(`Reading ${file.name}`, 0);
    let bytes;
    try {
      bytes = await readWithProgress(file, (part) => progress(`Reading ${file.name}`, part * 0.4));
    } catch {
      return finish("This file could not be read. Pick it again.");
    }
    // What the server would refuse in a standard room is refused in a sealed one too,
    // where the server cannot look: a "photo.png" that is no PNG is never offered as one.
    if (!contentsAre(typeOf(file), bytes, config.files_signatures ?? {})) {
      return finish(`The contents of ${file.name} are not ${typeOf(file)}: it was not shared.`);
    }
    const room = currentRoom();
    let frame;
    if (room?.info.sealed) {
      if (!room.sealed) return finish(INCOMPLETE_LINK);
      progress(`Encrypting ${file.name}`, 0.4);
      const sealed = await sealFile(bytes);
      if (!upload || currentRoom() !== room) return;
      upload.card = { name: file.name, mime_type: typeOf(file), size: bytes.length, sha256: await sha256Hex(bytes), key: sealed.key };
      frame = { type: "UploadFile", name: "encrypted.bin", mime_type: "application/octet-stream", content: toBase64(sealed.blob) };
    } else {
      progress(`Encoding ${file.name}`, 0.4);
      frame = { type: "UploadFile", name: file.name, mime_type: typeOf(file), content: toBase64(bytes) };
    }
    const size = frame.content.length;
    if (!upload || !send(frame, "upload")) return finish("Not connected. Try again once reconnected.");
    progress(`Sending ${file.name}`, 0.5);
    upload.timer = setInterval(() => {
      const left = connection.bufferedAmount;
      if (left > 0) return progress(`Sending ${file.name}`, 0.5 + 0.5 * (1 - left / size));
      clearInterval(upload.timer);
      progress(`Sent ${file.name}; waiting for the server…`, 1);
    }, 100);
  }

  $("file-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("file").files[0]);
  });

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    start(event.dataTransfer.files[0]);
  });

  function itemsOf(fileId) {
    return document.querySelectorAll(`#messages li[data-file-id="${CSS.escape(fileId)}"]`);
  }

  function addDeleteButton(item) {
    if (item.querySelector(".delete-file") || item.classList.contains("deleted")) return;
    const button = el("button", {
      text: "Delete",
      className: "delete-file",
      attrs: { type: "button", "aria-label": `Delete ${item.dataset.fileName}` },
    });
    button.addEventListener("click", () => send({ type: "DeleteFile", file_id: item.dataset.fileId }, "file"));
    item.append(button);
  }

  function note(item, text) {
    let line = item.querySelector(".file-note");
    if (!line) {
      line = el("p", { className: "file-note", attrs: { role: "status" } });
      item.querySelector(".text").after(line);
    }
    line.textContent = text;
  }

  // A click on a sealed file's name: fetched, decrypted, checked, then saved under its name.
  async function saveSealed(item, card) {
    const button = item.querySelector(".file-link");
    if (ariaDisabled(button)) return;
    setAriaDisabled(button, true);
    note(item, `Downloading ${card.name}…`);
    try {
      const bytes = await openSealed(card, (part) => note(item, `Downloading ${card.name}… ${Math.round(part * 100)} %`));
      note(item, "");
      // Never rendered by the page: saved as bytes under the card's name (made safe when
      // the card was read, app.js readSealed).
      const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
      const anchor = el("a", { attrs: { href: url, download: card.name } });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      if (error instanceof FileGone) item.classList.add("expired");
      note(item, error.message);
    } finally {
      setAriaDisabled(button, false);
    }
  }

  // An image's item came on the page: previewed once it is in view.
  function watch(item, file) {
    if (blobUrls.has(file.id)) return showPreview(item, file.name, blobUrls.get(file.id));
    fileOf.set(item, file);
    inView.observe(item);
  }

  function previewed(id, url) {
    for (const item of itemsOf(id)) {
      inView.unobserve(item);
      if (url) showPreview(item, item.dataset.fileName, url);
    }
  }

  // Ask for the wanted previews, as many as may be in flight and this socket's reads allow.
  function pump() {
    if (paused) return;
    while (reads.length && reads[0] < Date.now() - 60_000) reads.shift();
    for (const [id, file] of wanted) {
      if (fetching.size >= PREVIEWS_AT_ONCE) return;
      if (!file.card && reads.length >= PREVIEW_READS_PER_MINUTE) return pause(reads[0] + 60_000 - Date.now());
      if (!file.card && !inRoom()) return;
      wanted.delete(id);
      if (blobUrls.has(id) || deletedIds.has(id)) continue;
      fetching.set(id, file);
      if (file.card) {
        previewSealed(file.card);
      } else if (send({ type: "GetFile", file_id: id }, "preview")) {
        reads.push(Date.now());
      } else {
        fetching.delete(id); // no socket: asked for again once rejoined (resume)
        return wanted.set(id, file);
      }
    }
  }

  function pause(wait) {
    paused = setTimeout(() => {
      paused = null;
      pump();
    }, wait);
  }

  // A preview's answer came (or none will): the next one may go.
  function answered(id, again = false) {
    const file = fetching.get(id);
    fetching.delete(id);
    if (again && file) wanted.set(id, file);
    pump();
  }

  async function previewSealed(card) {
    const id = card.id.toLowerCase();
    const round = generation;
    try {
      const bytes = await openSealed(card);
      if (round !== generation) return;
      if (!contentsAre(baseType(card.mime_type), bytes, config.files_signatures ?? {})) {
        // Its sender's client did not check it (a client of another make): no preview.
        throw new Error(`No preview: the contents of ${card.name} are not ${baseType(card.mime_type)}.`);
      }
      if (!itemsOf(id).length) return answered(id); // its message left the page meanwhile
      const url = URL.createObjectURL(new Blob([bytes], { type: baseType(card.mime_type) }));
      blobUrls.set(id, url);
      previewed(id, url);
    } catch (error) {
      if (round !== generation) return;
      previewed(id, null);
      for (const item of itemsOf(id)) {
        if (error instanceof FileGone) item.classList.add("expired");
        note(item, error.message);
      }
    }
    answered(id);
  }

  function markDeleted(item) {
    const focused = item.contains(document.activeElement);
    inView.unobserve(item);
    item.classList.add("deleted");
    item.querySelector(".text").replaceChildren("File deleted: ", item.dataset.fileName);
    for (const node of item.querySelectorAll(".preview, .delete-file, .file-note")) node.remove();
    // Its Delete button or its link had the focus: the message's actions button takes it.
    if (focused && !item.contains(document.activeElement)) item.querySelector(".message-actions")?.focus();
  }

  return {
    // Called for each file message on the page: delete button and image preview.
    decorate(item, file, isOwner) {
      item.dataset.fileName = file.name;
      if (deletedIds.has(file.id)) return markDeleted(item);
      if (isOwner || mine.has(file.id)) addDeleteButton(item);
      if (file.card) {
        item.querySelector(".file-link").addEventListener("click", () => saveSealed(item, file.card));
        if (PREVIEW_TYPES.has(baseType(file.card.mime_type))) watch(item, file);
        return;
      }
      if (file.isImage) watch(item, file);
    },
    uploaded(metadata) {
      const card = upload?.card;
      const sent = upload?.file;
      mine.add(metadata.id);
      for (const item of itemsOf(metadata.id)) addDeleteButton(item);
      finish();
      // The picker is emptied of the file just shared, not of one picked meanwhile.
      const picked = $("file").files[0];
      if (!picked || picked === sent) $("file-form").reset();
      // A sealed room's file is announced by its card, which names it and holds its key.
      // It is shared once that card is stored (app.js); a standard room's, now.
      if (card) postCard({ t: "file", id: metadata.id, ...card });
      else $("status").textContent = `Shared ${metadata.name} (${formatSize(metadata.size)}).`;
    },
    content(metadata, content) {
      if (fetching.has(metadata.id)) {
        pauses = 0;
        answered(metadata.id);
      }
      if (!PREVIEW_TYPES.has(metadata.mime_type) || blobUrls.has(metadata.id)) return;
      if (!itemsOf(metadata.id).length) return; // its message left the page meanwhile
      const url = URL.createObjectURL(new Blob([fromBase64(content)], { type: metadata.mime_type }));
      blobUrls.set(metadata.id, url);
      previewed(metadata.id, url);
    },
    deleted(fileId) {
      deletedIds.add(fileId);
      for (const item of itemsOf(fileId)) markDeleted(item);
      const url = blobUrls.get(fileId);
      if (url) URL.revokeObjectURL(url);
      blobUrls.delete(fileId);
    },
    // A file message taken off the page (app.js, keepRecent): no longer watched, and its
    // preview's bytes are let go once no message on the page shows them.
    forget(item) {
      const id = item.dataset.fileId;
      inView.unobserve(item);
      if ([...itemsOf(id)].some((other) => other !== item)) return;
      wanted.delete(id);
      const url = blobUrls.get(id);
      if (url) URL.revokeObjectURL(url);
      blobUrls.delete(id);
    },
    // True when the error (answering `request`: requests.js) was about an upload or a
    // preview and has been shown.
    handleError(error, request) {
      if (request?.context === "preview") {
        const id = request.frame.file_id;
        if (error.code === "file_not_found") {
          for (const item of itemsOf(id)) item.classList.add("expired");
        }
        if (error.code !== "rate_limited") previewed(id, null);
        else if (!paused) {
          pauses += 1;
          pause(backoff(pauses - 1, 2000, 60_000));
        }
        answered(id, error.code === "rate_limited");
        return true;
      }
      if (request?.context !== "upload") return false;
      finish(humanError(error));
      return true;
    },
    connectionLost() {
      if (upload) finish("The connection dropped during the upload. Send the file again.");
      // GetFile frames in flight are answered on no socket; a new socket reads afresh.
      for (const [id, file] of fetching) {
        if (file.card) continue;
        fetching.delete(id);
        wanted.set(id, file);
      }
      reads.length = 0;
    },
    // In the room again (a rejoin): the previews left waiting are asked for.
    resume: () => pump(),
    reset() {
      generation += 1;
      inView.disconnect();
      wanted.clear();
      fetching.clear();
      clearTimeout(paused);
      paused = null;
      pauses = 0;
      mine.clear();
      deletedIds.clear();
      for (const url of blobUrls.values()) URL.revokeObjectURL(url);
      blobUrls.clear();
      if (upload) finish();
    },
  };
}

// The image is decoded before it goes in, so that it comes at its height: put in at none
// and left to grow, it pushed the end of a list that showed it out of view, and the list
// then stopped following new messages down. A list that showed its end still does.
async function showPreview(item, name, url) {
  const img = el("img", { className: "preview", attrs: { src: url, alt: `Preview of ${name}` } });
  await img.decode().catch(() => {}); // one that does not decode shows as the browser shows it
  // Gone, deleted or previewed meanwhile: nothing to show.
  if (!item.isConnected || item.classList.contains("deleted") || item.querySelector(".preview")) return;
  const list = item.closest("#messages");
  const followed = list !== null && atBottom(list);
  item.querySelector(".text").after(img); // under the link, above the Delete button
  if (followed) list.scrollTop = list.scrollHeight;
}
