// Files: checks before sending, upload progress, download links, image previews, delete.

import { fromBase64, toBase64 } from "./crypto.js";
import { humanError } from "./errors.js";
import { el } from "./render.js";

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

function typeOf(file) {
  const declared = (file.type || "").split(";")[0].trim().toLowerCase();
  if (declared) return declared;
  const extension = /\.([a-z0-9]+)$/i.exec(file.name)?.[1]?.toLowerCase();
  return TYPE_BY_EXTENSION[extension] ?? "";
}

// The page refuses what the server would refuse, before reading a byte.
export function checkFile(file, config) {
  if (!file) return "Choose a file first.";
  if (file.size === 0) return "This file is empty.";
  if (file.size > config.files_max_size) {
    return `This file is too large (${formatSize(file.size)}); the limit is ${formatSize(config.files_max_size)}.`;
  }
  const type = typeOf(file);
  if (!config.files_allowed_mime_types.includes(type)) {
    return `Files of type ${type || "unknown"} may not be shared here. Allowed: ${config.files_allowed_mime_types.join(", ")}.`;
  }
  return null;
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

export function setUpFiles({ config, send, connection, showError }) {
  let upload = null; // {name, timer}
  const previews = []; // file ids asked for with GetFile, answered in order
  const blobUrls = new Map();
  const deletedIds = new Set();
  // Files this connection uploaded: PROTOCOL.md gives the right to delete them to the
  // uploading connection only (and to owners), so a reconnect forgets them.
  const mine = new Set();

  function progress(label, fraction) {
    $("upload").hidden = false;
    $("upload-label").textContent = label;
    $("upload-progress").value = Math.round(fraction * 100);
  }

  function finish(error) {
    if (upload) clearInterval(upload.timer);
    upload = null;
    $("upload").hidden = true;
    $("file-form").querySelector("button[type=submit]").disabled = false;
    showError("file-error", error ?? "");
  }

  async function start(file) {
    showError("file-error", "");
    if (upload) return showError("file-error", "Wait for the current upload to finish.");
    const problem = checkFile(file, config);
    if (problem) return showError("file-error", problem);
    if (!connection.isOpen) return showError("file-error", "Not connected. Try again once reconnected.");
    upload = { name: file.name, timer: null };
    $("file-form").querySelector("button[type=submit]").disabled = true;
    // Reading and encoding take the first half of the bar, sending the second.
    progress(`Reading ${file.name}`, 0);
    let bytes;
    try {
      bytes = await readWithProgress(file, (part) => progress(`Reading ${file.name}`, part * 0.4));
    } catch {
      return finish("This file could not be read. Pick it again.");
    }
    progress(`Encoding ${file.name}`, 0.4);
    const frame = { type: "UploadFile", name: file.name, mime_type: typeOf(file), content: toBase64(bytes) };
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

  function markDeleted(item) {
    item.classList.add("deleted");
    item.querySelector(".text").replaceChildren("File deleted: ", item.dataset.fileName);
    for (const node of item.querySelectorAll(".preview, .delete-file")) node.remove();
  }

  return {
    // Called for each file message on the page: delete button and image preview.
    decorate(item, file, isOwner) {
      item.dataset.fileName = file.name;
      if (deletedIds.has(file.id)) return markDeleted(item);
      if (isOwner || mine.has(file.id)) addDeleteButton(item);
      if (file.isImage) {
        if (blobUrls.has(file.id)) return showPreview(item, file.name, blobUrls.get(file.id));
        if (send({ type: "GetFile", file_id: file.id }, "preview")) previews.push(file.id);
      }
    },
    uploaded(metadata) {
      mine.add(metadata.id);
      for (const item of itemsOf(metadata.id)) addDeleteButton(item);
      finish();
      $("file-form").reset();
      $("status").textContent = `Shared ${metadata.name} (${formatSize(metadata.size)}).`;
    },
    content(metadata, content) {
      const index = previews.indexOf(metadata.id);
      if (index >= 0) previews.splice(index, 1);
      if (!PREVIEW_TYPES.has(metadata.mime_type)) return;
      const url = URL.createObjectURL(new Blob([fromBase64(content)], { type: metadata.mime_type }));
      blobUrls.set(metadata.id, url);
      for (const item of itemsOf(metadata.id)) showPreview(item, item.dataset.fileName, url);
    },
    deleted(fileId) {
      deletedIds.add(fileId);
      for (const item of itemsOf(fileId)) markDeleted(item);
      const url = blobUrls.get(fileId);
      if (url) URL.revokeObjectURL(url);
      blobUrls.delete(fileId);
    },
    // True when the error was about files and has been shown.
    handleError(error, context) {
      if (error.code === "file_not_found" && previews.length) {
        for (const item of itemsOf(previews.shift())) item.classList.add("expired");
        return true;
      }
      // `forbidden` answers a DeleteFile, or an upload the malware scanner refused.
      const scanner = error.code === "forbidden" && context !== "file";
      if (upload && (context === "upload" || scanner)) {
        finish(humanError(error));
        return true;
      }
      return false;
    },
    connectionLost(isOwner) {
      previews.length = 0;
      mine.clear();
      if (!isOwner) for (const button of document.querySelectorAll("#messages .delete-file")) button.remove();
      if (upload) finish("The connection dropped during the upload. Send the file again.");
    },
    reset() {
      previews.length = 0;
      mine.clear();
      deletedIds.clear();
      for (const url of blobUrls.values()) URL.revokeObjectURL(url);
      blobUrls.clear();
      if (upload) finish();
    },
  };
}

function showPreview(item, name, url) {
  if (item.querySelector(".preview")) return;
  // Under the link, above the Delete button.
  item.querySelector(".text").after(el("img", { className: "preview", attrs: { src: url, alt: `Preview of ${name}` } }));
}
