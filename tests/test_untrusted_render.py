"""Reply text is untrusted: whatever it holds, what nb_claude shows never runs script,
never fetches an image and never links to a script URL, while Markdown stays Markdown.

Outputs are audited by rendering them with mistune (raw HTML allowed, harmful links
allowed, as a trusting front end would) and reading the HTML that comes out.
"""

from __future__ import annotations

import json
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mistune
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nb_claude
from nb_claude import _config
from nb_claude._markdown import code_span, escape_text, safe_markdown, safe_url
from nb_claude._render import turn_markdown

LEAK = "http://127.0.0.1:9/leak"
HOSTILE = [
    "<script>window.__pwned=1; document.title='pwned'</script>",
    '<img src=x onerror="window.__pwned=2">',
    "<svg onload=alert(1)><circle r=1></svg>",
    "<iframe src='https://example.com'></iframe>",
    "<a href=javascript:alert(1)>click</a>",
    "<a href='javascript:alert(1)'>click</a> <b onmouseover=alert(1)>x</b>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1)) [y]( java\tscript:alert(1)) [z](&#106;avascript:alert(1))",
    "[x](<javascript:alert(1)>) [y](javascript&colon;alert(1)) [w](java\\script:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=) [v](vbscript:msgbox(1))",
    f"![]({LEAK})",
    f"![alt]({LEAK} \"title\")",
    f"![alt][r]\n\n[r]: {LEAK}",
    f"![r]\n\n[r]: {LEAK}",
    f"![r][]\n\n[r]: <{LEAK}>",
    "[go][r]\n\n[r]: javascript:alert(1)",
    "[go][r]\n\n[r]:\n  javascript:alert(1)",
    "&lt;script&gt;alert(1)&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62;",
    "<javascript:alert(1)> <https://example.com> <me@example.com>",
    f"<{LEAK}!>![x]({LEAK})",
    f"!!![x]({LEAK}) \\![y]({LEAK})",
    "```\n<img src=x onerror=alert(1)>",
    "````\n```\n<img src=x onerror=alert(1)>\n```\n<script>alert(1)</script>",
    "```\ncode\n```~\n<img src=x onerror=alert(1)>\n```\n<img src=x onerror=alert(2)>",
    "```js`x\n<img src=x onerror=alert(1)>\n```",
    "``` <img src=x onerror=alert(1)>\ncode\n```",
    "~~~\n<img src=x onerror=alert(1)>\n~~~~\n<img src=y onerror=alert(2)>",
    "    <img src=x onerror=alert(1)>\n\ntext <img src=x onerror=alert(2)>",
    "- item\n\n    <img src=x onerror=alert(1)>",
    "1. item\n\n        ```\n        <img src=x onerror=alert(1)>\n        ```",
    "> ```\n> <img src=x onerror=alert(1)>\n> ```",
    "`a` <img src=x onerror=alert(1)> `b`",
    "[a](b`c) <img src=x onerror=alert(1)> `",
    "<http://x`>` <img src=x onerror=alert(1)> `",
    "`` ` <img src=x onerror=alert(1)> `` and \\` <img src=x onerror=alert(2)> `",
    "`<img src=x onerror=alert(1)>`",
    f"`![x]({LEAK})` `[a](javascript:alert(1))`",
    "$<img src=x onerror=alert(1)>$ and $$<script>alert(1)</script>$$",
    f"$![x]({LEAK})$ $[a](javascript:alert(1))$",
    "\\begin{align}<img src=x onerror=alert(1)>\\end{align}",
    "$\\href{javascript:alert(1)}{x}$ $\\style{background:url(http://127.0.0.1:9/leak)}{x}$",
    "<!-- comment --> <![CDATA[x]]> <?php ?> <!DOCTYPE html>",
    "<div\nonmouseover=alert(1)>x</div>",
    "| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | `x|<b>` |",
    "<details open><summary>x</summary><img src=x onerror=alert(1)></details>",
    "<style>body{background:url(http://127.0.0.1:9/leak)}</style>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "\r\n<img src=x onerror=alert(1)>\r<script>alert(2)</script>",
]
RENDER = mistune.create_markdown(
    renderer=mistune.HTMLRenderer(escape=False, allow_harmful_protocols=True),
    plugins=["table", "strikethrough", "url"])
DANGEROUS_TAGS = {"script", "img", "iframe", "svg", "object", "embed", "style", "link", "meta",
                  "base", "form", "video", "audio", "source", "math", "frame", "frameset",
                  "input", "button", "textarea", "image", "picture", "track", "applet"}
OURS = {"details", "summary", "sub", "span", "code", "br"}


class Audit(HTMLParser):
    """Every tag, attribute and link of rendered HTML that could run, fetch or mislead."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DANGEROUS_TAGS:
            own_thumbnail = tag == "img" and any(
                name == "src" and (value or "").startswith("data:image/") for name, value in attrs)
            if not own_thumbnail:
                self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("srcset", "formaction", "xlink:href", "style"):
                self.problems.append(f"{tag} {name}={value!r}")
            if name == "href":
                self.links.append(value or "")
                if not safe_url(value or ""):
                    self.problems.append(f"href={value!r}")

    def handle_comment(self, data: str) -> None:
        self.problems.append("<!--")


def audit(markdown: str) -> list[str]:
    parser = Audit()
    parser.feed(RENDER(markdown))
    parser.close()
    return parser.problems


def test_safe_url_reads_schemes_as_a_browser_does() -> None:
    for url in ("https://example.com", "http://x", "mailto:a@b.c", "page.html", "#top", "/a/b",
                "?q=1", "//example.com/x"):
        assert safe_url(url), url
    for url in ("javascript:alert(1)", " JAVASCRIPT:x", "java\tscript:x", "&#106;avascript:x",
                "javascript&colon;x", "data:text/html,x", "vbscript:x", "file:///etc/passwd",
                "java\\script:x", "\x01javascript:x"):
        assert not safe_url(url), url


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_inert(text: str) -> None:
    shown = safe_markdown(text)
    assert audit(shown) == [], shown
    assert shown == safe_markdown(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_inert_inside_a_turn(text: str) -> None:
    """The composed turn (prompt, thinking, tool call, reply, footer) holds nothing live."""
    turn = _turn(text)
    for live in (False, True):
        md = turn_markdown(turn, live=live, prompt=True)
        assert audit(md) == [], md


def test_raw_html_shows_as_text() -> None:
    html = RENDER(safe_markdown("Look: <script>alert(1)</script> & <b>bold</b>"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.replace("&lt;/script>", "&lt;/script&gt;")
    assert "&lt;b" in html and "<b>" not in html
    assert "&amp;" in html


def test_images_become_links_that_are_not_fetched() -> None:
    html = RENDER(safe_markdown(f"![chart of sales]({LEAK}) and [a link]({LEAK})"))
    assert "<img" not in html
    assert html.count(f'href="{LEAK}"') == 2 and "image: chart of sales" in html


def test_script_links_show_as_text() -> None:
    html = RENDER(safe_markdown("[click](javascript:alert(1)) and [ok](https://example.com)"))
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    assert '<a href="https://example.com">ok</a>' in html


def test_autolinks_keep_their_url() -> None:
    html = RENDER(safe_markdown("See <https://example.com/a_b> or <me@example.com>, "
                                "not <javascript:alert(1)>."))
    assert 'href="https://example.com/a%5Fb"' in html and 'href="mailto:me@example.com"' in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html


BENIGN = """\
Region **north** is the most *skewed*; see `df.groupby('region')` and `a < b`.

| region | mean | note |
|---|---|---|
| north | 5.5 | `x<y` |
| south | 2.0 | ~~old~~ |

```html
<div class="x">a &amp; b</div>
```

1. first
2. second with [docs](https://pandas.pydata.org) and <https://example.com>

Inline math $a<b$ and display:

$$
\\frac{a}{b} < c \\quad x & y
$$

    indented <code> stays code
"""


def test_benign_markdown_keeps_its_meaning() -> None:
    shown = safe_markdown(BENIGN)
    html = RENDER(shown)
    assert "<strong>north</strong>" in html and "<em>skewed</em>" in html
    assert "<code>df.groupby('region')</code>" in html
    assert "<code>a &lt; b</code>" in html and "<code>x&lt;y</code>" in html
    assert "<table>" in html and "<del>old</del>" in html
    assert "<pre><code class=\"language-html\">&lt;div class=&quot;x&quot;&gt;a &amp;amp; b" in html
    assert "<ol>" in html and '<a href="https://pandas.pydata.org">docs</a>' in html
    assert "```html\n<div class=\"x\">a &amp; b</div>\n```" in shown  # code is not re-escaped
    assert "$a< b$" in shown  # TeX ignores the space; JupyterLab escapes math itself
    assert "\\frac{a}{b} < c \\quad x & y" in shown
    assert "indented &lt;code&gt; stays code" in html
    assert audit(shown) == []


def test_code_fence_left_open_is_closed_so_it_cannot_swallow_what_follows() -> None:
    shown = safe_markdown("```python\nprint('<b>')")
    assert shown == "```python\nprint('<b>')\n```"
    md = turn_markdown(_turn("```python\nprint(1)"))
    assert md.rstrip().endswith("</sub>") and RENDER(md).count("<sub>") == 1


def test_escape_text_shows_text_exactly() -> None:
    for text in ("# not a heading", "- not a list", "1. not a list", "*not em* _nor_ this",
                 "[not](a link) ![nor](an image)", "$x$ is not math", "<b>raw</b> & more",
                 "    not code", "| not | a table |", "a\\b `c`"):
        html = RENDER(escape_text(text))
        assert html.startswith("<p>") and "<" not in html[3:-5].replace("&lt;", ""), html
        from html import unescape
        assert unescape(html[3:-5]).strip() == text.strip(), html


def test_code_span_uses_html_only_when_backticks_cannot_hold_it() -> None:
    assert code_span("default") == "`default`"
    assert code_span("a`b") == "``a`b``"
    assert code_span("<x>") == "<code>&lt;x&gt;</code>"


def test_large_reply_is_linear() -> None:
    chunk = "Some *prose* with `code`, a <tag>, $x<1$, [a](https://e.com) & ![i](http://x).\n"
    small = chunk * 2_000
    started = time.perf_counter()
    safe_markdown(small)
    one = time.perf_counter() - started
    started = time.perf_counter()
    big = safe_markdown(small * 16)
    sixteen = time.perf_counter() - started
    assert sixteen < 40 * max(one, 0.002), (one, sixteen)
    assert big.count("&lt;tag>") == 32_000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "<", ">", "&", "`", "```", "~~~", "$", "$$", "!", "[", "]", "(", ")", ":", "\\", "\n", "\n\n",
    "    ", " ", "-", "1.", "#", "|", "*", "_", "img src=x onerror=alert(1)", "script",
    "javascript:alert(1)", LEAK, "a", "http://e.com", "@", "&#106;", "begin{x}", "end{x}",
    "href", "\t", "> "]), max_size=40).map("".join))
def test_any_mix_of_markup_renders_inert(text: str) -> None:
    assert audit(safe_markdown(text)) == []


def _turn(text: str) -> Any:
    from nb_claude._session import Step, Turn
    from nb_claude._stream import Reply
    from nb_claude._tools import ToolResult

    reply = Reply(model="anthropic/claude-opus-4-8")
    reply.text = text
    reply.thinking = text
    reply.error = text
    reply.warnings.append(text)
    call = _tool_call(text)
    reply.tool_calls.append(call)
    turn = Turn(text, [])
    step = Step(reply)
    step.results = [ToolResult(call.id, call.name, text, summary=text, arguments="{}")]
    turn.steps.append(step)
    return turn


def _tool_call(text: str) -> Any:
    from nb_claude._stream import ToolCall

    return ToolCall(id="call_1", name=text, arguments=json.dumps({"q": text}))


# -- the real front ends ------------------------------------------------------------

HOSTILE_REPLY = ("Here: <script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=2\"> "
                 f"![]({LEAK}) [leak]({LEAK}) [js](javascript:alert(1))\n\n"
                 "```html\n<div>kept</div>\n```\n")


def _assert_safe_outputs(outputs: list[dict[str, Any]]) -> str:
    final = ""
    for data in outputs:
        md = data.get("text/markdown")
        if md is not None:
            assert audit(md) == [], md
            final = md
    return final


def test_cell_reply_is_shown_inert(run: Any, server: Any) -> None:
    server.reply(chunks=[HOSTILE_REPLY[i:i + 7] for i in range(0, len(HOSTILE_REPLY), 7)],
                 delay=0.002, thinking="<img src=x onerror=alert(3)>")
    cell = run("%%claude --thinking\nShow me <b>HTML</b>")
    assert cell.error is None
    final = _assert_safe_outputs([o.data for o in cell.outputs])
    assert "&lt;script>window.__pwned=1&lt;/script>" in final
    assert "```html\n<div>kept</div>\n```" in final
    assert f"[image: ]({LEAK})" in final
    history = run("%claude_history")
    assert _assert_safe_outputs([o.data for o in history.outputs])
    assert audit(nb_claude.get_session().to_markdown()) == []


def test_service_error_in_the_footer_is_inert(run: Any, server: Any) -> None:
    server.reply(chunks=["partial ", "text"], delay=0.01)
    server.fault(500, f"<img src=x onerror=alert(1)> ![]({LEAK})")
    cell = run("%%claude\nGo")
    _assert_safe_outputs([o.data for o in cell.outputs])


def test_panel_transcript_is_inert(configured: _config.Settings, server: Any) -> None:
    from nb_claude._panel import ChatPanel

    panel = ChatPanel("untrusted")
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def watch(change: dict[str, Any]) -> None:
        with lock:
            seen.extend(o["data"] for o in change["new"])

    def hook(change: dict[str, Any]) -> None:
        for child in change["new"]:
            if hasattr(child, "outputs") and not getattr(child, "_nbc_watched", False):
                child._nbc_watched = True
                child.observe(watch, names="outputs")

    panel.transcript.observe(hook, names="children")
    try:
        server.reply(chunks=[HOSTILE_REPLY[i:i + 9] for i in range(0, len(HOSTILE_REPLY), 9)],
                     delay=0.003)
        panel.input.value = f"<img src=x onerror=alert(9)> ![]({LEAK})"
        panel.send_button.click()
        deadline = time.monotonic() + 10
        while panel._thread is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert panel.session.history, "the reply did not arrive"
        with lock:
            outputs = list(seen)
        assert len(outputs) >= 2
        final = _assert_safe_outputs(outputs)
        assert "&lt;script>" in final and "**You:** &lt;img" in final
        assert all(audit(md) == [] for md in panel.markdown)
    finally:
        panel.close()


def test_exports_are_inert(configured: _config.Settings, server: Any, tmp_path: Path) -> None:
    import nbformat

    server.reply(HOSTILE_REPLY)
    session = nb_claude.get_session("export-untrusted")
    session.ask(f"<script>alert(1)</script> ![]({LEAK})", display=False)
    assert audit(session.to_markdown()) == []
    notebook = nbformat.read(session.to_notebook(tmp_path / "out.ipynb"), as_version=4)
    for cell in notebook.cells:
        assert audit(cell.source) == [], cell.source
    assert any("```html\n<div>kept</div>\n```" in c.source for c in notebook.cells)


def test_a_huge_tool_argument_is_clipped() -> None:
    from nb_claude._session import Step, Turn
    from nb_claude._stream import Reply

    reply = Reply(model="m")
    reply.tool_calls.append(_tool_call("x" * 1_000_000))
    turn = Turn("q", [])
    turn.steps.append(Step(reply))
    assert len(turn_markdown(turn)) < 5_000
