"""The pure upload rules: strict base64, types and their bytes, the file message."""

import base64

import pytest

from chat import protocol
from chat.errors import ProtocolError
from files import validation

ALLOWED = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
]
SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
    "image/jpeg": b"\xff\xd8\xff\xe0" + b"\x00" * 20,
    "image/gif": b"GIF89a" + b"\x00" * 20,
    "image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,
    "application/pdf": b"%PDF-1.7\n",
    "application/zip": b"PK\x03\x04" + b"\x00" * 26,
    "text/plain": "héllo, wörld 👋\n".encode(),
}


def code_of(call) -> str:
    with pytest.raises(ProtocolError) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize("size", [1, 2, 3, 4, 1000, 256 * 1024 * 3 + 1])
def test_decode_base64_round_trips(size):
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert validation.decode_base64(base64.b64encode(data).decode()) == data
    assert protocol.decoded_size(base64.b64encode(data).decode()) == size


@pytest.mark.parametrize(
    "text",
    [
        "",  # an empty file
        "QUJD\n",  # whitespace
        " QUJD",
        "QUJ",  # not a multiple of 4
        "QU=D",  # padding inside
        "QUJD====",  # padding beyond the end
        "QUJDRB==",  # stray bits in the last quantum
        "QUJ-",  # urlsafe alphabet
        "QUJDé===",  # not ASCII
        "QQ==" + "QUJD",  # padding before more data
        "QUJD" * 70000 + "QQ==" + "QUJD",  # ... also across decoding slices
    ],
)
def test_decode_base64_refuses_anything_not_strict(text):
    assert code_of(lambda: validation.decode_base64(text)) == "invalid_field"


def test_mime_types_are_compared_lower_case_without_parameters():
    assert validation.normalise_mime(" Text/Plain; charset=UTF-8") == "text/plain"


@pytest.mark.parametrize("mime_type", ["text/html", "image/svg+xml", "application/xhtml+xml"])
def test_html_and_svg_are_never_allowed_even_when_configured(mime_type):
    assert not validation.mime_allowed(mime_type, [*ALLOWED, mime_type])


def test_a_type_the_server_cannot_verify_is_refused():
    assert not validation.mime_allowed("application/x-unknown", [*ALLOWED, "application/x-unknown"])


@pytest.mark.parametrize("mime_type", ALLOWED)
def test_each_allowed_type_accepts_its_own_bytes_and_refuses_others(mime_type):
    validation.check_upload(mime_type, SAMPLES[mime_type], max_size=1000, allowed=ALLOWED)
    for other, data in SAMPLES.items():
        if other != mime_type and not (mime_type == "text/plain" and other == "application/pdf"):
            assert not validation.bytes_match(mime_type, data), (mime_type, other)


@pytest.mark.parametrize("data", [b"a\x00b", b"\xff\xfe\xfd", "é".encode()[:1]])
def test_text_must_be_utf8_without_nul(data):
    assert code_of(lambda: validation.check_upload("text/plain", data, max_size=10, allowed=ALLOWED)) == (
        "mime_not_allowed"
    )


def test_a_refused_type_is_repeated_in_the_error_at_most_in_part():
    """`mime_type` has no length limit but the frame's: a reply repeating a 3 MB type whole
    would be as large as the frame."""
    with pytest.raises(ProtocolError) as refused:
        validation.check_upload("x/" + "y" * 3_000_000, b"data", max_size=10, allowed=ALLOWED)
    assert refused.value.code == "mime_not_allowed" and len(refused.value.message) < 200
    with pytest.raises(ProtocolError) as short:
        validation.check_upload("text/html", b"<p>", max_size=10, allowed=ALLOWED)
    assert short.value.message == "Files of type 'text/html' are not allowed."


def test_size_is_checked_before_the_type():
    big_html = b"<html>" * 100
    assert code_of(lambda: validation.check_upload("text/html", big_html, max_size=10, allowed=ALLOWED)) == (
        "file_too_large"
    )
    assert code_of(lambda: validation.check_upload("text/html", b"<p>", max_size=10, allowed=ALLOWED)) == (
        "mime_not_allowed"
    )
    validation.check_upload("text/plain", b"x" * 10, max_size=10, allowed=ALLOWED)


def test_file_message_cannot_break_its_link():
    message = validation.file_message("a](/evil)[b\r\n(c).txt", "text/plain", "ID")
    assert message == "[File: a/evilbc.txt](/files/ID)"


@pytest.mark.parametrize(
    ("name", "mime_type", "shown"),
    [
        ("notes.html", "text/plain", "notes.html.txt"),
        ("x.svg", "text/plain", "x.svg.txt"),
        ("run.bat", "text/plain", "run.bat.txt"),
        ("run.bat.", "text/plain", "run.bat..txt"),
        ("notes.TXT", "text/plain", "notes.TXT"),
        ("notes.txt  ", "text/plain", "notes.txt  "),
        ("notes.html  ", "text/plain", "notes.html.txt"),
        ("photo.JPEG", "image/jpeg", "photo.JPEG"),
        ("photo.png", "image/jpeg", "photo.png.jpg"),
        ("archive", "application/zip", "archive.zip"),
        ("evil\u202egnp.exe", "text/plain", "evilgnp.exe.txt"),
        ("a\u2066b\u2069\u200b\u200e\u061c\ufeff\u00ad\u2060\u200d.txt", "text/plain", "ab.txt"),
        ("line\u2028break\u2029.pdf", "application/pdf", "linebreak.pdf"),
        ("\u202e[]()", "text/plain", "file.txt"),
        ("r\u00e9sum\u00e9\u202etxt.exe", "text/plain", "r\u00e9sum\u00e9txt.exe.txt"),
    ],
)
def test_the_shown_name_ends_in_the_verified_type_and_hides_nothing(name, mime_type, shown):
    assert validation.shown_name(name, mime_type) == shown


def test_system_checks_warn_about_unusable_types_and_a_generated_key(settings):
    from django.core.checks import run_checks

    settings.FILES_ALLOWED_MIME_TYPES = ["text/plain", "image/svg+xml", "audio/flac"]
    (warning,) = [m for m in run_checks() if m.id == "chat.W003"]
    assert "image/svg+xml, audio/flac" in warning.msg
    settings.FILES_ALLOWED_MIME_TYPES = ["text/plain", "image/png"]
    assert "chat.W003" not in [m.id for m in run_checks()]

    settings.FILES_ENCRYPTION_KEY = ""
    assert "chat.W002" in [m.id for m in run_checks(include_deployment_checks=True)]
    settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(32)).decode()
    assert "chat.W002" not in [m.id for m in run_checks(include_deployment_checks=True)]


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(bytes(16)).decode()])
def test_a_malformed_file_key_stops_the_server_at_start(settings, value):
    """files.E002: an error of `manage.py check` (and so of serve's start), not a
    failure at the first upload."""
    from django.core.checks import run_checks

    settings.FILES_ENCRYPTION_KEY = value
    (error,) = [m for m in run_checks() if m.id == "files.E002"]
    assert error.msg == "FILES_ENCRYPTION_KEY must be base64 of 32 bytes."
    settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(32)).decode() + "\n"
    assert "files.E002" not in [m.id for m in run_checks()]


@pytest.mark.django_db
def test_files_under_another_key_stop_the_server_at_start(settings):
    """files.E003, a database check like chat.E002: the newest file on disk must open
    under FILES_ENCRYPTION_KEY (or its previous), else every download is server_error. A
    newest blob missing from FILES_ROOT (deleted between a backup's two copies) is passed
    over for the next one."""
    from django.core.checks import run_checks

    from files import blobs
    from tests.helpers import seat_in_new_room, stored_file

    def errors() -> list[str]:
        return [m.id for m in run_checks(databases=["default"]) if m.id.startswith("files.E")]

    old = settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(32)).decode()
    assert errors() == []  # no file yet
    seat = seat_in_new_room()
    older, newest = stored_file(seat), stored_file(seat)
    assert errors() == []
    settings.FILES_ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()
    assert errors() == ["files.E003"]
    blobs.remove(newest.blob)
    assert errors() == ["files.E003"]  # the next one decides
    settings.FILES_ENCRYPTION_KEY_PREVIOUS = old
    assert errors() == []
    blobs.remove(older.blob)
    settings.FILES_ENCRYPTION_KEY_PREVIOUS = ""
    assert errors() == []  # no blob left to judge the key by
