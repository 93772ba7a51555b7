"""The admin's login page, bounded before Django hashes a password.

Every POST to Django's admin login hashes a password (PBKDF2, ~0.3 s of a core), even
for an unknown user, each request in a thread of its own: 40 wrong logins at a time
from one address took chat p99 from 6 ms to 363 ms. So a login attempt first takes a
place among its client address's ADMIN_LOGIN_FAILURES_PER_MINUTE (kept if it fails,
given back if it logs in; in Redis across processes when the layer is Redis), and then
one of the process's ADMIN_LOGIN_CHECKS_AT_ONCE. Without a place it is answered at once
from the event loop, 429 or 503, and nothing is hashed and no thread is taken.
"""

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from chat import address_limits
from chat.security import address_key
from chat.workers import Admission

FAILURES_WINDOW = 60.0
checks = Admission()  # logins checking a password in this process now


def failures() -> address_limits.LocalQuota | address_limits.RedisQuota:
    return address_limits.quota("admin-login-failures", window=FAILURES_WINDOW)


async def login(request: HttpRequest) -> HttpResponse:
    """`admin.site.login`, a POST only with a place in both bounds."""
    if request.method != "POST":
        return await sync_to_async(admin.site.login)(request)
    address = address_key(request.META.get("REMOTE_ADDR") or "unknown")  # an IPv6 client: its network
    quota = failures()
    claim = await quota.claim(address, settings.ADMIN_LOGIN_FAILURES_PER_MINUTE)
    if claim is None:
        return refusal(429, "Too many failed logins from your address; wait a minute.", retry_after=60)
    limit = settings.ADMIN_LOGIN_CHECKS_AT_ONCE
    if not checks.enter(None, limit, limit):
        await quota.release(address, claim)  # not checked: no failure
        return refusal(503, "The server is busy checking logins; try again in a moment.", retry_after=1)
    # The check holds its place until its thread is done: Django cancels a request whose
    # client goes away, and the hash in the thread runs on regardless.
    check = asyncio.ensure_future(sync_to_async(_login)(request))
    check.add_done_callback(_checked)
    response, logged_in = await asyncio.shield(check)
    if logged_in:
        await quota.release(address, claim)
    return response


def _login(request: HttpRequest) -> tuple[HttpResponse, bool]:
    response = admin.site.login(request)
    return response, request.user.is_authenticated


def _checked(check: asyncio.Future) -> None:
    checks.leave(None)
    if not check.cancelled():
        check.exception()  # whoever awaited it has it; nobody may be left to


def refusal(status: int, text: str, retry_after: int) -> HttpResponse:
    headers = {"Retry-After": str(retry_after), "Cache-Control": "no-store"}
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8", headers=headers)
