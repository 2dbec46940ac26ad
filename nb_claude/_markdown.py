"""Untrusted text made safe to show as Markdown: raw HTML shows as text, images become
links that are never fetched, and only http, https, mailto and relative links stay links.

Pure and linear. Safety does not hang on parsing Markdown exactly as a front end does:
text left unescaped is either inside a code fence this module writes itself (opened at
most three spaces in, closed by a copy of its opening line), or holds nothing a renderer
could turn into a tag, an image or a link.
"""

from __future__ import annotations

import bisect
import html
import re

__all__ = ["safe_markdown", "escape_text", "code_span", "safe_url"]

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_MATH_SEARCH = 65_536

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_INFO = re.compile(r"[\w+#.-]*")
_LIST_ITEM = re.compile(r" {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
_BACKTICK_RUN = re.compile(r"`+")
_BLANK = re.compile(r"\n[ \t]*\n")
_TOKEN = re.compile(
    r"\\begin\{[A-Za-z]*\*?\}"
    r"|\\\\[(\[]"
    r"|\\[!-/:-@\[-`{-~]"
    r"|`+"
    r"|\$\$?"
    r"|!+\["
    r"|\](?=[(:])"
    r"|<(?=[A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\x00-\x20]*>"
    r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9][A-Za-z0-9.-]*>)")
_AUTOLINK = re.compile(r"<([^<>\x00-\x20]*)>")
_MATH_END = re.compile(r"\\[\s\S]|\$\$?|\n[ \t]*\n")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_DEST = re.compile(r"\s*<?([^\s>]{0,200})")
_TEX_DANGER = re.compile(r"\\(?=(?:href|style|class|cssId|data|mmlToken|require|url|unicode)"
                         r"(?![A-Za-z]))")
_MATH_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_MATH_IMAGE = re.compile(r"!(?=\[)")
_MATH_LINK = re.compile(r"\](?=[(:])")
_ENTITIES = {ord(c): f"&#{ord(c)};" for c in "\\`*_[]~$|"}
_ENTITIES.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"})
_TEXT_ENTITIES = {k: v for k, v in _ENTITIES.items() if k != ord("_")}
_LOOSE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
_ESCAPED = {"<": "&lt;", "&": "&amp;", "!": "&#33;"}
_URL_QUOTE = {ord(c): f"%{ord(c):02X}" for c in "()<>`$\\[]*_~|"}
_LINE_START = re.compile(r"^([ \t]*)(?:([#+\-=])|(\d{1,9})([.)]))?", re.M)


def safe_url(url: str) -> bool:
    """True for http, https, mailto and scheme-less (relative) URLs, as a browser reads them."""
    cleaned = html.unescape(url)
    cleaned = "".join(ch for ch in cleaned if ch > " " and ch != "\\").lower()
    match = _SCHEME.match(cleaned)
    return match is None or match.group(1) in SAFE_SCHEMES


def escape_text(text: str) -> str:
    """Text shown exactly as written, in Markdown or inside our own HTML."""
    escaped = _LOOSE_UNDERSCORE.sub("&#95;", text.translate(_TEXT_ENTITIES))
    return _LINE_START.sub(_line_start, escaped)


def _line_start(match: re.Match[str]) -> str:
    indent = match.group(1).replace(" ", "&#32;").replace("\t", "&#9;")
    if match.group(2):
        return f"{indent}&#{ord(match.group(2))};"
    if match.group(3):
        return f"{indent}{match.group(3)}&#{ord(match.group(4))};"
    return indent


def _inert(text: str) -> bool:
    """Harmless even if a renderer took it for plain Markdown text."""
    return "<" not in text and "![" not in text and "](" not in text and "]:" not in text \
        and _TEX_DANGER.search(text) is None


def code_span(text: str) -> str:
    """`text` as inline code; as HTML with entities when backticks could not hold it safely."""
    flat = text.replace("\n", " ")
    if _inert(flat):
        longest = max((len(m) for m in _BACKTICK_RUN.findall(flat)), default=0)
        ticks = "`" * (longest + 1)
        pad = " " if flat[:1] in ("`", " ") or flat[-1:] in ("`", " ") else ""
        return f"{ticks}{pad}{flat}{pad}{ticks}"
    return f"<code>{flat.translate(_ENTITIES)}</code>"


def _columns(indent: str) -> int:
    return len(indent.expandtabs(4))


def _dedent(line: str, columns: int) -> str:
    stripped = line.lstrip(" \t")
    lead = line[: len(line) - len(stripped)].expandtabs(4)
    return lead[columns:] + stripped


def _closes(line: str, char: str, length: int) -> bool:
    """Any line some renderer could take as the end of the fence (a generous test)."""
    body = line.lstrip(" \t")
    run = len(body) - len(body.lstrip(char))
    return run >= length and not body[run:].strip(" \t`~")


def safe_markdown(text: str) -> str:
    """Markdown stays Markdown; raw HTML, images and script links do not survive."""
    if not text:
        return ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    prose: list[str] = []
    blank_before, in_list = True, False
    i, count = 0, len(lines)
    while i < count:
        line = lines[i]
        fence = _FENCE.match(line) if ("`" in line[:8] or "~" in line[:8]) else None
        if fence and (fence.group(2)[0] == "~" or "`" not in fence.group(3)):
            if prose:
                out.append(_inline("\n".join(prose)))
                prose = []
            indent, marker, info = fence.groups()
            end = i + 1
            while end < count and not _closes(lines[end], marker[0], len(marker)):
                end += 1
            body = lines[i + 1:end]
            info_word = _INFO.match(info.strip())
            opener = marker + (info_word.group(0) if info_word else "")
            depth = _columns(indent)
            if depth <= 3 or all(_inert(b) for b in body):
                out.append("\n".join([indent + opener, *body, indent + marker]))
            else:
                out.append("\n".join([opener, *(_dedent(b, depth) for b in body), marker]))
            i = end + 1
            blank_before = False
            continue
        stripped = line.lstrip(" \t")
        if stripped and blank_before and not in_list and \
                _columns(line[: len(line) - len(stripped)]) >= 4:
            end = i
            while end < count and (not lines[end].strip() or
                                   (_columns(lines[end][: len(lines[end]) -
                                                        len(lines[end].lstrip(" \t"))]) >= 4
                                    and not _FENCE.match(lines[end]))):
                end += 1
            while end > i and not lines[end - 1].strip():
                end -= 1
            if prose:
                out.append(_inline("\n".join(prose)))
                prose = []
            block = lines[i:end]
            if all(_inert(b) for b in block):
                out.append("\n".join(block))
            else:
                inner = [_dedent(b, 4) for b in block]
                longest = max((len(m) for b in inner for m in _BACKTICK_RUN.findall(b)),
                              default=2)
                ticks = "`" * max(3, longest + 1)
                out.append("\n".join([ticks, *inner, ticks]))
            i = end
            blank_before = False
            continue
        if not stripped:
            blank_before = True
        else:
            if _LIST_ITEM.match(line):
                in_list = True
            elif blank_before and line[:1] not in (" ", "\t"):
                in_list = False
            blank_before = False
        prose.append(line)
        i += 1
    if prose:
        out.append(_inline("\n".join(prose)))
    return "\n".join(out)


class _Runs:
    """Backtick runs and blank lines of one stretch of prose, for pairing code spans."""

    def __init__(self, text: str) -> None:
        self.starts: dict[int, list[int]] = {}
        for match in _BACKTICK_RUN.finditer(text):
            self.starts.setdefault(match.end() - match.start(), []).append(match.start())
        self.blanks = [m.start() for m in _BLANK.finditer(text)]

    def paragraph_end(self, pos: int, limit: int) -> int:
        index = bisect.bisect_right(self.blanks, pos)
        return self.blanks[index] if index < len(self.blanks) else limit

    def closer(self, pos: int, length: int, limit: int) -> int:
        starts = self.starts.get(length, [])
        index = bisect.bisect_right(starts, pos)
        if index < len(starts) and starts[index] < self.paragraph_end(pos, limit):
            return starts[index]
        return -1


def _prose(text: str) -> str:
    return _TEX_DANGER.sub("&#92;", text.replace("&", "&amp;").replace("<", "&lt;"))


def _math(text: str) -> str:
    """TeX ignores spaces, so a space after `<`, `!` or `]` leaves the formula as it was."""
    text = _MATH_TAG.sub("< ", text)
    text = _MATH_IMAGE.sub("! ", text)
    text = _MATH_LINK.sub("] ", text)
    return _TEX_DANGER.sub("&#92;", text)


def _math_end(text: str, start: int, delimiter: str, limit: int) -> int:
    for match in _MATH_END.finditer(text, start, min(limit, start + _MATH_SEARCH)):
        token = match.group(0)
        if token == delimiter:
            return match.end()
        if token[0] == "\n":
            return -1
    return -1


def _inline(text: str) -> str:
    """One stretch of prose: code spans, math, autolinks, images and links made safe."""
    runs: _Runs | None = None
    out: list[str] = []
    pos, size = 0, len(text)
    while True:
        match = _TOKEN.search(text, pos)
        if match is None:
            out.append(_prose(text[pos:]))
            return "".join(out).replace("![", "!\\[")
        start, token = match.start(), match.group(0)
        out.append(_prose(text[pos:start]))
        pos = match.end()
        first = token[0]
        if first == "\\":
            if token.startswith("\\begin{") or token in ("\\\\(", "\\\\["):
                delimiter = "\\end{" + token[7:] if token.startswith("\\begin{") else \
                    "\\\\" + (")" if token[-1] == "(" else "]")
                end = text.find(delimiter, pos, min(size, pos + _MATH_SEARCH))
                blank = _BLANK.search(text, pos, end) if end >= 0 else None
                if end >= 0 and blank is None:
                    pos = end + len(delimiter)
                    out.append(_math(text[start:pos]))
                else:
                    out.append(_prose(token))
            else:
                out.append(_ESCAPED.get(token[1], token))
        elif first == "`":
            if runs is None:
                runs = _Runs(text)
            closer = runs.closer(start, len(token), size)
            if closer < 0:
                out.append(token)
            else:
                content = text[pos:closer]
                if _inert(content):
                    out.append(text[start:closer + len(token)])
                else:
                    out.append(code_span(content.strip(" ") if content.strip(" ") else content))
                pos = closer + len(token)
        elif first == "$":
            end = _math_end(text, pos, token, size)
            if end < 0:
                out.append(token)
            else:
                out.append(_math(text[start:end]))
                pos = end
        elif first == "!":
            bangs = len(token) - 1
            out.append("&#33;" * (bangs - 1) + "[image: ")
        elif first == "]":
            destination = _DEST.match(text, pos + 1)
            url = destination.group(1) if destination else ""
            out.append("]" + text[pos] if safe_url(url) else "]\\" + text[pos])
            pos += 1
        else:
            link = _AUTOLINK.match(text, start)
            inner = link.group(1) if link else ""
            out.append(_autolink(inner))
            pos = link.end() if link else pos


def _autolink(inner: str) -> str:
    """<url> becomes a plain link when its scheme is safe, text otherwise."""
    target = inner if ":" in inner else "mailto:" + inner
    shown = inner.translate(_ENTITIES)
    if not safe_url(target):
        return shown
    return f"[{shown}]({target.translate(_URL_QUOTE)})"
