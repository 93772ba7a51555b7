"""Property tests of the parser: any input is a command or a protocol error, and the
large-frame shortcut answers exactly as the full decoder."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.errors import ProtocolError

TYPES = [
    "CreateRoom",
    "JoinRoom",
    "ChatMessage",
    "GetMembers",
    "LeaveRoom",
    "UploadFile",
    "GetFile",
    "DeleteFile",
]
FIELDS = ["type", "name", "description", "password", "owner_name", "join_key", "since", "owner_token",
          "content", "mime_type", "file_id"]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frames = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | json_values},
    optional={field: json_values | st.text(alphabet="ABCDabcd0123+/=", max_size=40) for field in FIELDS[1:]},
)


def outcome(parse, text):
    try:
        return parse(text)
    except ProtocolError as exc:
        return exc.code


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_any_text_is_a_command_or_a_protocol_error(text):
    assert outcome(protocol.parse_client_message, text) is not None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_any_frame_is_a_command_or_a_protocol_error(frame):
    assert outcome(protocol.parse_client_message, json.dumps(frame)) is not None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.sampled_from(FIELDS), st.integers(0, 3), st.sampled_from(["", "\x01", "=", "\\"]))
def test_the_large_frame_shortcut_answers_as_the_full_decoder(frame, field, where, extra):
    big = "QUJD" * (protocol.LARGE_STRING // 4 + 1)
    frame[field] = [big + extra, big, extra + big, big[:-1] + extra][where]
    text = json.dumps(frame)
    fast, full = outcome(protocol.parse_large_frame, text), outcome(protocol.parse_client_message, text)
    if isinstance(fast, protocol.UploadFile) and fast.large:
        assert isinstance(full, protocol.UploadFile)
        assert (fast.name, fast.mime_type, fast.content) == (full.name, full.mime_type, full.content)
    else:
        assert fast == full
