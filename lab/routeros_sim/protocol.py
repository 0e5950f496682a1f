"""RouterOS API wire protocol: length-prefixed words, sentences ended by an empty word.

Plain functions so the encoder/decoder can be unit-tested without sockets.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid RouterOS API sentence."""


def encode_length(length: int) -> bytes:
    """Encode a word length the way RouterOS does (1 to 5 bytes, big endian)."""
    if length < 0:
        raise ProtocolError(f"negative length {length}")
    if length < 0x80:
        return length.to_bytes(1, "big")
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    if length < 0x100000000:
        return b"\xf0" + length.to_bytes(4, "big")
    raise ProtocolError(f"word too long: {length}")


def length_prefix_size(first: int) -> int:
    """How many bytes the length prefix has, given its first byte."""
    if first < 0x80:
        return 1
    if first < 0xC0:
        return 2
    if first < 0xE0:
        return 3
    if first < 0xF0:
        return 4
    if first == 0xF0:
        return 5
    raise ProtocolError(f"reserved control byte 0x{first:02x}")


def decode_length(prefix: bytes) -> int:
    """Decode a complete length prefix (as returned by length_prefix_size bytes)."""
    size = length_prefix_size(prefix[0])
    if len(prefix) != size:
        raise ProtocolError(f"length prefix needs {size} bytes, got {len(prefix)}")
    if size == 1:
        return prefix[0]
    if size == 2:
        return int.from_bytes(prefix, "big") & 0x3FFF
    if size == 3:
        return int.from_bytes(prefix, "big") & 0x1FFFFF
    if size == 4:
        return int.from_bytes(prefix, "big") & 0x0FFFFFFF
    return int.from_bytes(prefix[1:], "big")


def encode_word(word: str, encoding: str = "utf-8") -> bytes:
    data = word.encode(encoding)
    return encode_length(len(data)) + data


def encode_sentence(words: Iterable[str], encoding: str = "utf-8") -> bytes:
    """A sentence is its words followed by the empty word (a single zero byte)."""
    return b"".join(encode_word(w, encoding) for w in words) + b"\x00"


def decode_sentences(buffer: bytes, encoding: str = "utf-8") -> tuple[list[list[str]], bytes]:
    """Split a byte buffer into complete sentences; return them and the unconsumed rest."""
    sentences: list[list[str]] = []
    pos = 0
    start = 0
    words: list[str] = []
    while pos < len(buffer):
        size = length_prefix_size(buffer[pos])
        if pos + size > len(buffer):
            break
        length = decode_length(buffer[pos:pos + size])
        if pos + size + length > len(buffer):
            break
        pos += size
        if length == 0:
            sentences.append(words)
            words = []
            start = pos
            continue
        words.append(buffer[pos:pos + length].decode(encoding, errors="replace"))
        pos += length
    return sentences, buffer[start:]


class SentenceReader:
    """Read whole sentences from a (possibly TLS) socket."""

    def __init__(self, sock: socket.socket, encoding: str = "utf-8") -> None:
        self.sock = sock
        self.encoding = encoding
        self.buffer = b""
        self.pending: list[list[str]] = []

    def read(self) -> list[str] | None:
        """Return the next sentence, or None when the peer closed the connection."""
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
            sentences, self.buffer = decode_sentences(self.buffer, self.encoding)
            self.pending.extend(sentences)
        return self.pending.pop(0)
