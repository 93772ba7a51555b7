"""Count the modules and module boundaries one chat message, one upload and one admin
kick cross, by watching the code run (docs/architecture.md, issue 15).

A profile hook sees every call in the project's own code (chat/, files/, config/) in
every thread, in time order, between sending the frame (or calling the kick) and its
delivery to the socket it concerns. Consecutive calls in one module are one step; a
boundary is a distinct pair (module A, module B) of consecutive steps, A != B. Nothing
is mocked: SQLite, the in-memory layer, the real consumer through Channels' test
communicator.

    .venv/bin/python bench/boundaries.py            # this checkout
    cd OTHER_CHECKOUT && python /path/to/bench/boundaries.py   # another build, the same way
"""

import asyncio
import base64
import dis
import inspect
import os
import sys
import tempfile
import threading
import weakref
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("CHAT_VAR_DIR", tempfile.mkdtemp(prefix="boundaries-"))
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from chatclient.crypto import encrypt  # noqa: E402
from config.asgi import application  # noqa: E402

PROJECT = ("chat/", "files/", "config/")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


class Path_:
    """The calls between the project's modules while recording.

    A call's caller is the nearest project frame below it on its stack. A task's first
    frame has none: its caller is the module that created the task (a task factory
    notes it); a worker thread's first frame is called by the module that handed the
    work over (`SyncToAsync.__call__` or `Executor.submit`, noted when they are called).
    """

    def __init__(self) -> None:
        self.edges: set[tuple[str, str]] = set()
        self.modules: set[str] = set()
        self.crossings = 0  # calls from one project module into another, repeats counted
        self.calls: list[str] = []  # each crossing: "caller -> module.function"
        self.names: dict[str, str | None] = {}
        self.starts: dict[object, int] = {}
        self.creators: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.handoff: str | None = None
        self.loop_thread = threading.get_ident()

    def module(self, filename: str) -> str | None:
        name = self.names.get(filename, "")
        if name == "":
            try:
                relative = Path(filename).resolve().relative_to(ROOT).as_posix()
            except ValueError:
                relative = ""
            name = relative.removesuffix(".py").replace("/", ".") if relative.startswith(PROJECT) else None
            self.names[filename] = name
        return name

    def resumed(self, frame) -> bool:  # noqa: ANN001
        """A coroutine or generator going on after an await or yield: not a new call."""
        code = frame.f_code
        if not code.co_flags & (inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR):
            return False
        start = self.starts.get(code)
        if start is None:
            resumes = (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")
            start = self.starts[code] = next(resumes)
        return frame.f_lasti > start

    def caller(self, frame) -> str | None:  # noqa: ANN001
        """The project module of `frame`, the caller: None when it is library code (a
        library calling back into the project, e.g. Channels dispatching a frame)."""
        return None if frame is None else self.module(frame.f_code.co_filename)

    def root(self, frame) -> bool:  # noqa: ANN001
        """Whether no project frame is below `frame` on its stack: the first frame of a
        task or of a worker thread's job."""
        while frame is not None:
            if self.module(frame.f_code.co_filename) is not None:
                return False
            frame = frame.f_back
        return True

    def nearest(self, frame) -> str | None:  # noqa: ANN001
        while frame is not None:
            name = self.module(frame.f_code.co_filename)
            if name is not None:
                return name
            frame = frame.f_back
        return None

    def hook(self, frame, event, arg) -> None:  # noqa: ANN001
        if event != "call":
            return
        code = frame.f_code
        if (code.co_name == "__call__" and code.co_filename.endswith("asgiref/sync.py")) or (
            code.co_name == "submit" and code.co_filename.endswith("concurrent/futures/thread.py")
        ):
            self.handoff = self.nearest(frame.f_back)
            return
        name = self.module(code.co_filename)
        if name is None or self.resumed(frame):
            return
        self.modules.add(name)
        caller = self.caller(frame.f_back)
        if caller is None and self.root(frame.f_back):
            if threading.get_ident() != self.loop_thread:
                caller = self.handoff
            else:
                task = asyncio.current_task()
                caller = self.creators.get(task) if task is not None else None
        if caller is not None and caller != name:
            self.edges.add((caller, name))
            self.crossings += 1
            self.calls.append(f"{caller} -> {name}.{code.co_qualname}")

    def task_factory(self, loop, coro, **kwargs):  # noqa: ANN001
        task = asyncio.Task(coro, loop=loop, **kwargs)
        creator = self.nearest(sys._getframe(1))
        if creator is not None:
            self.creators[task] = creator
        return task

    def start(self) -> None:
        self.edges, self.modules, self.crossings, self.calls = set(), set(), 0, []
        asyncio.get_running_loop().set_task_factory(self.task_factory)
        threading.setprofile_all_threads(self.hook)
        sys.setprofile(self.hook)

    def stop(self) -> None:
        sys.setprofile(None)
        threading.setprofile_all_threads(None)

    def report(self, title: str) -> dict:
        print(
            f"{title}: {len(self.modules)} modules, {len(self.edges)} boundaries"
            f" (module pairs), {self.crossings} crossings (calls across them)"
        )
        print("  modules:", ", ".join(sorted(self.modules)))
        print("  boundaries:", ", ".join(f"{a}->{b}" for a, b in sorted(self.edges)))
        if "-v" in sys.argv:
            print("  crossings, in order:\n   ", "\n    ".join(self.calls))
        return {"modules": sorted(self.modules), "boundaries": sorted(self.edges)}


async def connect(address: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    communicator.scope["client"] = (address, 5000)
    communicator.scope["server"] = ("127.0.0.1", 8000)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def until(communicator: WebsocketCommunicator, kind: str) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        if frame["type"] == kind:
            return frame


async def main() -> None:
    owner, member = await connect("10.0.0.1"), await connect("10.0.0.2")
    await owner.send_json_to({"type": "CreateRoom", "name": "R", "description": "", "password": None})
    created = await until(owner, "RoomCreated")
    await member.send_json_to(
        {"type": "JoinRoom", "join_key": created["room_info"]["join_key"], "name": "Bob", "password": None}
    )
    await until(member, "RoomJoined")
    await until(owner, "ParticipantJoined")
    key = created["encryption_key"]
    # Warm up each path once, so that first-use imports and caches are not counted.
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "warm")})
    await until(member, "ChatMessage")

    path = Path_()
    path.start()
    await owner.send_json_to({"type": "ChatMessage", "content": encrypt(key, "hello")})
    await until(member, "ChatMessage")
    path.stop()
    path.report("ChatMessage (frame -> the other socket)")

    upload = {"type": "UploadFile", "name": "a.png", "mime_type": "image/png"}
    await owner.send_json_to({**upload, "content": base64.b64encode(PNG).decode()})
    await until(owner, "FileUploaded")
    await until(member, "ChatMessage")
    path.start()
    await owner.send_json_to({**upload, "content": base64.b64encode(PNG + b"x").decode()})
    await until(owner, "FileUploaded")
    await until(member, "ChatMessage")
    path.stop()
    path.report("UploadFile (frame -> FileUploaded and the room's file message)")

    from chat import moderation
    from chat.models import Participant

    bob = await sync_to_async(Participant.objects.get)(name="Bob", left_at__isnull=True)
    path.start()
    remove = sync_to_async(moderation.remove_participant)
    await remove(participant_id=bob.pk, now=timezone.now(), actor="bench")
    kicked = await until(member, "Error")
    assert kicked["code"] == "kicked", kicked
    assert (await member.receive_output(timeout=10))["type"] == "websocket.close"
    path.stop()
    path.report("Kick (moderation.remove_participant -> kicked and close 4001)")
    await owner.disconnect()


if __name__ == "__main__":
    call_command("migrate", verbosity=0)
    asyncio.run(main())
