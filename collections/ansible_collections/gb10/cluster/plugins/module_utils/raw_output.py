"""What a raw task printed, without what the terminal and sudo add (plain Python, no Ansible).

``ansible.builtin.raw`` runs one SSH command with a terminal and sends no Python module to the node: the
reads that run on every serve.yml use it. Its terminal ends lines in CRLF and joins stderr to stdout, so
anything sudo prints first (``sudo: unable to resolve host ...``) comes before the command's own output.
A read therefore prints a mark line first, and its parser reads what follows the mark.
"""
from __future__ import annotations


def after_mark(text: str, mark: str) -> str:
    """``text`` with CRLF made LF, from the line after the first ``mark`` on.

    The mark may follow other text on its line (a notice without a newline); everything up to the end of
    that line is dropped. Without the mark the whole text is returned (with LF line ends), so a reader
    that finds nothing it knows still says what it saw."""
    body = str(text or "").replace("\r\n", "\n").replace("\r", "\n")
    if mark and mark in body:
        body = body.split(mark, 1)[1]
        body = body.split("\n", 1)[1] if "\n" in body else ""
    return body


def last_line(text: str) -> str:
    """The last line of ``text`` that is not blank, stripped ('' when there is none): a one-line answer
    (``printenv``) after whatever a login printed first."""
    lines = [ln.strip() for ln in str(text or "").replace("\r", "\n").split("\n") if ln.strip()]
    return lines[-1] if lines else ""
