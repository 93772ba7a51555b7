// Chat content encryption exactly as PROTOCOL.md, "Encryption", says:
// AES-256-GCM, a fresh 12-byte nonce, content = base64(nonce || ciphertext || tag).

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// The browser's own base64 (Uint8Array.prototype.toBase64, Chromium 140 and later) where
// it has one: 10 MiB in ~20 ms instead of ~1 s of the main thread (bench/sealed_files.py).
export function toBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let binary = "";
  // Chunks keep String.fromCharCode's argument list small for large files.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function fromBase64(text) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// WebCrypto exists only in a secure context: said in words rather than as a TypeError.
export function needsSecureContext() {
  if (!globalThis.crypto?.subtle) {
    throw new Error("This page needs a secure context (https or localhost) to encrypt.");
  }
}

export function importKey(keyBase64) {
  needsSecureContext();
  return crypto.subtle.importKey("raw", fromBase64(keyBase64), { name: "AES-GCM" }, false, [
    "encrypt",
    "decrypt",
  ]);
}

// `nonce` is only given by tests (the shared vectors); messages always get a random one.
export async function encrypt(key, text, nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))) {
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce }, key, encoder.encode(text)),
  );
  const out = new Uint8Array(NONCE_BYTES + sealed.length);
  out.set(nonce);
  out.set(sealed, NONCE_BYTES);
  return toBase64(out);
}

// Throws on anything that is not our ciphertext under this key.
export async function decrypt(key, content) {
  const raw = fromBase64(content);
  if (raw.length < NONCE_BYTES + TAG_BYTES) throw new Error("content too short");
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: raw.subarray(0, NONCE_BYTES) },
    key,
    raw.subarray(NONCE_BYTES),
  );
  return decoder.decode(plain);
}
