// The frames of ours the server answers, oldest first, so that each answer, and above
// all each Error (which carries no id), is taken for the request it answers.
//
// The server handles a socket's frames one at a time, in order, and answers each one
// (PROTOCOL.md) with an Error or its reply. Replies it sends to this socket alone (RoomJoined,
// History, Members, FileContent, FileUploaded...) come in that order, but a reply it
// broadcasts to the room (our ChatMessage coming back, MessageEdited, MessageDeleted,
// Reactions, FileDeleted) goes round through every server process and may come after the
// answer to a later frame. So nothing is sent behind a frame answered by a broadcast until
// its answer is in: the oldest request in flight is then always the one an Error answers.
// Typing and LeaveRoom are never answered in a room and are not requests.

const BROADCAST_ANSWERS = new Set(["ChatMessage", "EditMessage", "DeleteMessage", "React", "DeleteFile"]);

export class Requests {
  constructor(connection) {
    this.connection = connection;
    this.sent = []; // {frame, context, ...}: in flight on this socket, oldest first
    this.waiting = []; // behind one answered by a broadcast
  }

  // Send `frame` (or keep it until the broadcast ahead of it is answered); false when
  // there is no open socket. `request`: {context, ...} that the answer is handed with.
  send(frame, request) {
    if (!this.connection.isOpen) return false;
    this.waiting.push({ ...request, frame });
    this.flush();
    return true;
  }

  flush() {
    while (this.waiting.length && !BROADCAST_ANSWERS.has(this.sent.at(-1)?.frame.type)) {
      const request = this.waiting.shift();
      this.sent.push(request);
      this.connection.send(request.frame);
    }
  }

  // A reply came: the oldest request in flight of frame type `type` that `matches` it
  // (a broadcast answers ours only when it is about what ours sent), or null.
  answered(type, matches = () => true) {
    const index = this.sent.findIndex((request) => request.frame.type === type && matches(request.frame));
    if (index < 0) return null;
    const [request] = this.sent.splice(index, 1);
    this.flush();
    return request;
  }

  // An Error answering a frame: the oldest request in flight, or null.
  refused() {
    const request = this.sent.shift() ?? null;
    this.flush();
    return request;
  }

  // The socket is gone: every request in flight or waiting, which nothing will answer.
  dropped() {
    const lost = [...this.sent, ...this.waiting];
    this.sent = [];
    this.waiting = [];
    return lost;
  }
}
