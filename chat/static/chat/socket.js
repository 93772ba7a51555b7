// One WebSocket to this server's /ws/ (same origin, so it carries the session cookie),
// reopened with backoff whenever it drops, but for close 4003 (another tab or window
// took the participant over: reopening would take it back, in turns). It carries the
// affinity hint of the room it is for (`hint`), so that a proxy hashing it sends a
// room's members to one server process (docs/production.md, "Room affinity").

import { backoff } from "./errors.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const REPLACED = 4003;

export class Connection {
  constructor({ onOpen, onMessage, onDrop, onReplaced }) {
    this.url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/`;
    this.hint = null;
    this.handlers = { onOpen, onMessage, onDrop, onReplaced };
    this.stopped = false; // closed for good (4003) until `open()` is called again
    this.failures = 0;
    this.socket = null;
    this.timer = null;
  }

  open() {
    clearTimeout(this.timer);
    this.stopped = false;
    const socket = new WebSocket(this.hint ? `${this.url}?room=${this.hint}` : this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.failures = 0;
      this.handlers.onOpen();
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // Not ours to show: the server only sends JSON objects.
      }
      this.handlers.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      if (event.code === REPLACED) {
        this.stopped = true;
        this.handlers.onReplaced();
        return;
      }
      const delay = backoff(this.failures, FIRST_DELAY_MS, MAX_DELAY_MS);
      this.failures += 1;
      // Jitter keeps a room's browsers from all reconnecting in the same instant.
      const wait = Math.round(delay * (0.75 + Math.random() * 0.5));
      this.handlers.onDrop(event, wait);
      this.timer = setTimeout(() => this.open(), wait);
    });
  }

  // A new socket at once, the old one closed unheard (closing leaves its room): nothing
  // it would still have answered reaches the page, and no drop is reported.
  restart() {
    const old = this.socket;
    this.socket = null;
    old?.close();
    this.open();
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  get bufferedAmount() {
    return this.socket?.bufferedAmount ?? 0;
  }

  send(message) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }
}

// A room's affinity hint, as chatclient.client.affinity_hint: 8 hex digits of SHA-256
// over the join key, never the key itself. Null where WebCrypto is missing (a page
// served over plain HTTP from another host: the room cannot be entered there anyway).
export async function affinityHint(joinKey) {
  if (!globalThis.crypto?.subtle) return null;
  const text = new TextEncoder().encode(`chat-room-affinity:${joinKey}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text));
  return Array.from(digest.slice(0, 4), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
