"""BER-TLV (ISO/IEC 7816-4 §5.2, EMV Book 3 Annex B) with bounds.

Tags are one to three bytes (first byte low five bits 11111 announce more bytes; a
following byte with bit 8 set announces another), lengths are definite (short form
0-127, long form 81/82/83 + 1-3 bytes), constructed objects (bit 6 of the first tag
byte) hold nested objects. Every limit is explicit: tag bytes, length bytes, value
size and nesting depth; any byte string decodes or raises `TlvError`.

The social-security card's own records are simpler one-byte-tag TLV (DOMAIN.md §3.2:
tag = record id, 1-byte length); `parse_simple` reads those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TAG_BYTES_MAX = 3
LENGTH_BYTES_MAX = 3  # 81, 82, 83: values up to 16 MiB, far above any card file
VALUE_BYTES_MAX = 65_536
DEPTH_MAX = 8


class TlvError(ValueError):
    """Bytes that are not valid TLV within the limits; the message says where."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes = b""
    children: tuple[Tlv, ...] = field(default=())

    @property
    def constructed(self) -> bool:
        return bool(_first_tag_byte(self.tag) & 0x20)

    def find(self, tag: int) -> Tlv | None:
        """The first object with `tag` here or below (depth first)."""
        if self.tag == tag:
            return self
        for child in self.children:
            found = child.find(tag)
            if found is not None:
                return found
        return None


def _first_tag_byte(tag: int) -> int:
    return tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")[0]


def _read_tag(raw: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(raw):
        raise TlvError(f"tag expected at offset {pos}")
    start = pos
    first = raw[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(raw):
                raise TlvError(f"truncated multi-byte tag at offset {start}")
            b = raw[pos]
            pos += 1
            if pos - start > TAG_BYTES_MAX:
                raise TlvError(f"tag at offset {start} longer than {TAG_BYTES_MAX} bytes")
            if not b & 0x80:
                break
    return int.from_bytes(raw[start:pos], "big"), pos


def _read_length(raw: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(raw):
        raise TlvError(f"length expected at offset {pos}")
    first = raw[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > LENGTH_BYTES_MAX:
        raise TlvError(f"length form 0x{first:02X} at offset {pos - 1} not supported")
    if pos + count > len(raw):
        raise TlvError(f"truncated length at offset {pos - 1}")
    return int.from_bytes(raw[pos : pos + count], "big"), pos + count


def _parse(raw: bytes, depth: int) -> tuple[Tlv, ...]:
    if depth > DEPTH_MAX:
        raise TlvError(f"nesting deeper than {DEPTH_MAX}")
    out: list[Tlv] = []
    pos = 0
    while pos < len(raw):
        if raw[pos] in (0x00, 0xFF):  # padding between objects (ISO 7816-4 §5.2)
            pos += 1
            continue
        tag, pos = _read_tag(raw, pos)
        length, pos = _read_length(raw, pos)
        if length > VALUE_BYTES_MAX:
            raise TlvError(f"value of tag {tag:X} longer than {VALUE_BYTES_MAX} bytes")
        if pos + length > len(raw):
            raise TlvError(
                f"value of tag {tag:X} runs past the end ({length} bytes at offset {pos})"
            )
        value = raw[pos : pos + length]
        pos += length
        children = _parse(value, depth + 1) if _first_tag_byte(tag) & 0x20 else ()
        out.append(Tlv(tag, value, children))
    return tuple(out)


def parse(raw: bytes) -> tuple[Tlv, ...]:
    """All top-level objects of `raw` (constructed ones with their children)."""
    return _parse(bytes(raw), 0)


def encode(obj: Tlv) -> bytes:
    value = b"".join(encode(c) for c in obj.children) if obj.children else obj.value
    if len(value) > VALUE_BYTES_MAX:
        raise TlvError(f"value of tag {obj.tag:X} longer than {VALUE_BYTES_MAX} bytes")
    tag = obj.tag.to_bytes((obj.tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    else:
        size = (n.bit_length() + 7) // 8
        length = bytes((0x80 | size,)) + n.to_bytes(size, "big")
    return tag + length + value


def parse_simple(raw: bytes) -> dict[int, bytes]:
    """One-byte tag, one-byte length records (social security card EF05/EF06)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise TlvError(f"truncated record header at offset {pos}")
        tag, length = raw[pos], raw[pos + 1]
        if pos + 2 + length > len(raw):
            raise TlvError(f"record {tag:02X} runs past the end")
        out[tag] = bytes(raw[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return out
