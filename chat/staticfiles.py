"""Static files (the browser app, the admin) from the server itself, also under `serve`."""

import warnings

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


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
