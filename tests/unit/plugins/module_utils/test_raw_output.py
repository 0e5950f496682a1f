"""module_utils/raw_output: a raw task's stdout without what the terminal and sudo add."""
from __future__ import annotations

from ansible_collections.gb10.cluster.plugins.module_utils.raw_output import after_mark, last_line


def test_after_the_mark_with_lf_line_ends():
    text = "sudo: unable to resolve host gx10-1\r\n#begin#\r\nfirst\r\nsecond\r\n"
    assert after_mark(text, "#begin#") == "first\nsecond\n"


def test_the_mark_after_a_notice_without_a_newline():
    assert after_mark("[notice]#begin#\nbody\n", "#begin#") == "body\n"
    assert after_mark("#begin#", "#begin#") == ""


def test_only_the_first_mark_counts():
    assert after_mark("#begin#\na\n#begin#\nb\n", "#begin#") == "a\n#begin#\nb\n"


def test_without_the_mark_everything_is_kept():
    assert after_mark("a\r\nb\r\n", "#begin#") == "a\nb\n"
    assert after_mark(None, "#begin#") == ""  # type: ignore[arg-type]
    assert after_mark("a\n", "") == "a\n"


def test_last_line():
    assert last_line("Welcome\r\n\r\n10.0.0.1 1 10.0.0.2 22\r\n") == "10.0.0.1 1 10.0.0.2 22"
    assert last_line("  \r\n") == "" and last_line("") == ""
