"""Parse Debian control-file ("deb822") text: Release files, Packages indices, apt .sources files.

Format (Debian Policy §5.1, deb822(5)): paragraphs separated by blank lines; each field is
`Name: value`; a line starting with a space or tab continues the previous field; in apt
.sources files, lines starting with `#` are comments.
"""

from __future__ import annotations

from collections.abc import Iterator


def iter_paragraphs(text: str, *, comments: bool = False) -> Iterator[dict[str, str]]:
    """Yield each paragraph as {field: value}; continuation lines are joined with newlines.

    Field names keep their spelling; look them up with the case used by the archive
    (`Package`, `SHA256`, ...). Set `comments` for apt .sources files.
    """
    para: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if comments and line.startswith("#"):
            continue
        if not line.strip():
            if para:
                yield para
            para, last = {}, None
            continue
        if line[0] in " \t":
            # Continuation of the previous field (a lone " ." stands for an empty line).
            if last is not None:
                body = line[1:]
                para[last] += "\n" + ("" if body.strip() == "." else body)
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue  # not a field: ignore rather than guess
        last = name.strip()
        para[last] = value.strip()
    if para:
        yield para


def parse_paragraphs(text: str, *, comments: bool = False) -> list[dict[str, str]]:
    """All paragraphs of `text` as a list (see `iter_paragraphs`)."""
    return list(iter_paragraphs(text, comments=comments))
