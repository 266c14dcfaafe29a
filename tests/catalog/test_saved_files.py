"""Saved `GET /models` responses (`sync_catalog --from-file`): the encodings a file may come in."""

from __future__ import annotations

import codecs

import pytest

from catalog.sync import SourceError, decode_saved_text, read_saved_response

TEXT = '{"data": [], "note": "Ünïcödé ✓"}'


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + TEXT.encode("utf-8"),
        codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16 LE", "utf-16 BE"],
)
def test_each_accepted_encoding_reads_the_same_text(data):
    assert decode_saved_text(data, "models.json") == TEXT


@pytest.mark.parametrize(
    "data, says",
    [
        (TEXT.encode("utf-16-le"), "is not UTF-8 text"),  # UTF-16 without its BOM
        ("Ünïcödé".encode("cp1252"), "is not UTF-8 text (byte 0xdc at offset 0)"),
        (codecs.BOM_UTF32_BE + TEXT.encode("utf-32-be"), "is UTF-32"),
    ],
    ids=["utf-16 without a BOM", "cp1252", "utf-32"],
)
def test_any_other_encoding_is_one_readable_line(data, says):
    with pytest.raises(SourceError) as failure:
        decode_saved_text(data, "models.json")
    assert says in str(failure.value) and "\n" not in str(failure.value)


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path, settings):
    settings.LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES = 100
    path = tmp_path / "models.json"
    path.write_text('{"data": []}' + " " * 200)

    with pytest.raises(SourceError, match="is larger than 100 bytes"):
        read_saved_response(path)
