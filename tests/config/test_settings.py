"""config/settings.py reads the environment strictly: a typo is an error at start."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool

SPELLINGS = [("1", True), ("Yes", True), (" on ", True), ("0", False), ("OFF", False)]


@pytest.mark.parametrize(("raw", "value"), SPELLINGS)
def test_booleans_take_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("CHAT_TEST_FLAG", raw)
    assert env_bool("CHAT_TEST_FLAG", not value) is value


@pytest.mark.parametrize("raw", ["ture", "2", "enabled", "n"])
def test_a_boolean_typo_stops_the_start(monkeypatch, raw):
    monkeypatch.setenv("CHAT_TEST_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="CHAT_TEST_FLAG must be"):
        env_bool("CHAT_TEST_FLAG", False)


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("CHAT_TEST_FLAG", raising=False)
    assert env_bool("CHAT_TEST_FLAG", True) is True
    monkeypatch.setenv("CHAT_TEST_FLAG", "  ")
    assert env_bool("CHAT_TEST_FLAG", False) is False
