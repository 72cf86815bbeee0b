"""Issue 14, defect 7: bad input is a validation error, never ``internal``.

``"²".isdigit()`` is true but ``int("²")`` raises: a sync cursor of "².0" used to
answer ``internal`` and log a traceback. Over a real socket, in both codecs.
"""

from __future__ import annotations

import logging

import pytest

from proto.cursor import Cursor
from proto.errors import ProtocolError
from tests.chat_harness import running_chatd
from tests.harness import Services, make_settings

# Digits of other scripts, superscripts, signs, separators and white space that
# str.isdigit() or int() accept and a cursor this server issued never contains.
BAD_CURSORS = [
    "².0",
    "0.²",
    "٣.0",  # ARABIC-INDIC DIGIT THREE: isdigit() and int() both accept it
    "١٢.٣",
    "𝟘.0",  # MATHEMATICAL DOUBLE-STRUCK DIGIT ZERO
    "①.0",
    "+1.0",
    "-1.0",
    "1_0.0",
    " 1.0",
    "1.0\n",
    "1.0.0",
    "1",
    ".",
    "1.",
    "99999999999999.0",  # past the 12-digit stream positions
]


@pytest.mark.parametrize("text", BAD_CURSORS)
def test_cursor_parse_refuses_with_invalid_cursor(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        Cursor.parse(text)
    assert caught.value.code == "invalid-cursor"


def test_cursor_parse_reads_what_the_server_writes() -> None:
    assert Cursor.parse(str(Cursor(41, 17))) == Cursor(41, 17)
    assert Cursor.parse(None) == Cursor(0, 0)
    assert Cursor.parse("0.0") == Cursor(0, 0)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_a_bad_sync_cursor_is_invalid_cursor_over_a_real_socket(
    services: Services, caplog: pytest.LogCaptureFixture, codec: str
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_chatd(make_settings(services)) as chat:
        alice, _bob = await chat.pair()
        client = await chat.client(alice, codec=codec)
        try:
            for text in BAD_CURSORS:
                await client.send("sync", {"cursor": text})
                error = await client.wait_for("error")
                assert error["code"] == "invalid-cursor", (text, error)
            # The socket is still open and serves a good cursor.
            page = await client.sync("0.0")
            assert page["cursor"] == "0.0" and page["messages"] == []
        finally:
            await client.close()
        assert [e for e in client.of_type("error") if e["code"] == "internal"] == []
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
