"""The Content-Security-Policy of every response that sets none of its own."""

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin


def content_security_policy(request: HttpRequest) -> str:
    """Scripts and styles only from this server, sockets only to it, no inline code."""
    try:
        host = request.get_host()
    except DisallowedHost:
        host = ""
    # 'self' covers ws:/wss: to the same host in CSP level 3; older browsers need them named.
    sockets = f" ws://{host} wss://{host}" if host else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds the policy; a view that sets its own (file downloads) keeps it.

    MiddlewareMixin keeps it async-capable: one sync middleware would run every request
    of the async views (downloads, healthz) through a thread."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = content_security_policy(request)
        return response
