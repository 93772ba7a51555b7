"""Static files (the browser app, the admin) from the server itself, also under `serve`.

Served by WhiteNoise through the async wrapper below rather than by ServeStatic's async
middleware: at the same throughput ServeStatic cost 13-30 % more server CPU per request
(bench/README.md, "Static files: ServeStatic or the WhiteNoise wrapper").
"""

import warnings
from urllib.parse import unquote, urlsplit

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed names from `collectstatic`'s manifest, and the plain name for any file it lacks.

    A hashed name changes whenever the file does, so WhiteNoise (and nginx) let browsers
    keep it for good. `collectstatic` rewrites the modules' imports to hashed names too:
    `import ... from "./x.js";`, `export ... from "./x.js";`, `import "./x.js";` and
    `import("./x.js")`, exactly so (Django's patterns need the `;`, and no spaces inside
    `import(...)`; tests/chat/test_static.py fails on any import left plain). It also
    writes a gzip copy beside each file worth compressing (`app.3f9c2a1b7e4d.js.gz`; a
    Brotli `.br` too where the `brotli` module is installed), which WhiteNoise sends with
    `Content-Encoding` to a client that accepts it.

    With DEBUG on, Django gives plain names whatever the manifest says. With it off:
    without a manifest (`serve` and the tests run no collectstatic), for a file added since
    collectstatic, or one whose hashed copy is gone from STATIC_ROOT, `{% static %}` gives
    the plain name, which WhiteNoise serves from the apps' folders, where Django's storage
    would fail the page with a 500 (and so would WhiteNoise's and ServeStatic's, even with
    their MANIFEST_STRICT off: they hash the file in STATIC_ROOT, which may be missing).
    `check --deploy` says so (chat.W004).
    """

    support_js_module_import_aggregation = True

    def load_manifest(self) -> tuple[dict[str, str], str]:
        paths, manifest_hash = super().load_manifest()
        return {name: hashed for name, hashed in paths.items() if self.exists(hashed)}, manifest_hash

    def stored_name(self, name: str) -> str:
        if self.hash_key(urlsplit(unquote(name)).path.strip()) not in self.hashed_files:
            return name
        return super().stored_name(name)


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, kept async.

    WhiteNoise's middleware is sync-only, and one sync middleware makes Django run every
    request of the async views (downloads, healthz) through a thread. Finding and
    reading a file touch the disk, so they run in a worker thread, never the database's.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        with warnings.catch_warnings():
            # Files come from the apps' static/ folders (WHITENOISE_USE_FINDERS), so an
            # empty STATIC_ROOT (no collectstatic run) is normal.
            warnings.filterwarnings("ignore", message="No directory at")
            super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.read, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)

    def read(self, static_file, request) -> HttpResponse:
        """The whole file: the app's files are small, and a file iterator would make
        Django's ASGI handler consume it in a thread and warn on every request."""
        streamed = self.serve(static_file, request)
        response = HttpResponse(b"".join(streamed.streaming_content), status=streamed.status_code)
        streamed.close()
        for name, value in streamed.items():
            response[name] = value
        return response
