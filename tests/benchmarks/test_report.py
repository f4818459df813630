"""The BENCHMARKS.md writer rewrites only its own section."""

from __future__ import annotations

import pytest

from benchmarks.report import HEADER, replace_section, sections, write_section


def test_new_file_gets_header_and_section(tmp_path):
    path = tmp_path / "B.md"
    write_section(path, "ingest", "## Ingest\n\nfast")
    text = path.read_text()
    assert text.startswith(HEADER)
    assert sections(text) == {"ingest": "## Ingest\n\nfast"}


def test_rewrite_preserves_everything_else(tmp_path):
    path = tmp_path / "B.md"
    path.write_text(
        "# mine\n\nintro by hand\n\n<!-- bench:live -->\nticks: 1\n<!-- /bench:live -->\n\n"
        "<!-- bench:engine -->\nold engine\n<!-- /bench:engine -->\n\ntrailer by hand\n"
    )
    write_section(path, "engine", "new engine\n\nwith $1 \\1 backrefs")
    text = path.read_text()
    assert text == (
        "# mine\n\nintro by hand\n\n<!-- bench:live -->\nticks: 1\n<!-- /bench:live -->\n\n"
        "<!-- bench:engine -->\nnew engine\n\nwith $1 \\1 backrefs\n<!-- /bench:engine -->\n\n"
        "trailer by hand\n"
    )
    write_section(path, "ingest", "ingest body")
    after = path.read_text()
    assert after.startswith(text.rstrip("\n"))
    assert sections(after) == {
        "live": "ticks: 1",
        "engine": "new engine\n\nwith $1 \\1 backrefs",
        "ingest": "ingest body",
    }


def test_one_block_per_name_and_names_checked():
    text = replace_section("", "a", "1")
    text = replace_section(text, "a", "2")
    assert text.count("<!-- bench:a -->") == 1
    assert sections(text)["a"] == "2"
    with pytest.raises(ValueError):
        replace_section(text, "bad name", "x")
