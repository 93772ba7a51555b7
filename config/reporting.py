"""What Django's error pages and reports may show of the settings.

With DJANGO_DEBUG=1 the technical 500 page lists every setting; Django hides the
names matching API|TOKEN|KEY|SECRET|PASS|SIGNATURE, but DATABASE_URL and REDIS_URL
(and the channel layer's `address`, and the sentinels) carry passwords under other
names. This filter hides those names too, and any value anywhere that is a URL with
credentials in it (`scheme://user:password@host`).
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# Django's own list, and the names our settings keep connection strings under.
HIDDEN_SETTINGS = re.compile(
    r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|REDIS_URL|SENTINEL|^ADDRESS$|^LOCATION$",
    flags=re.IGNORECASE,
)
_CREDENTIALS_IN_URL = re.compile(r"://[^/\s@]*@")


def holds_credentials(value: object) -> bool:
    """A string that is (or holds) a URL with a user or password in it."""
    return isinstance(value, str) and _CREDENTIALS_IN_URL.search(value) is not None


class SafeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = HIDDEN_SETTINGS

    def cleanse_setting(self, key, value):
        if holds_credentials(value):
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)
