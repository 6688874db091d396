"""CLIF as highlighted HTML: a small Pygments lexer (Pygments has none for
CLIF) and the style sheet the pages inline."""

from __future__ import annotations

from typing import ClassVar

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
    _TokenType,
)

_CSS_CLASS = "hl"


class ClifLexer(RegexLexer):
    name = "CLIF"
    aliases: ClassVar[list[str]] = ["clif"]
    filenames: ClassVar[list[str]] = ["*.clif"]

    tokens: ClassVar[dict[str, list[tuple[str, _TokenType | object]]]] = {
        "root": [
            (r"\s+", Whitespace),
            # run lines are what a filetest checks: shown apart from comments
            (r";\s*(run|print):.*$", String.Doc),
            (r";.*$", Comment.Single),
            (r"^(test|set|target|feature)\b", Keyword.Namespace),
            (r"\b(function|block\d+|ss\d+|fn\d+|sig\d+|gv\d+|jt\d+|const\d+)\b", Name.Label),
            (r"%[\w.$]+", Name.Function),
            (r"\bv\d+\b", Name.Variable),
            (r"\b([iIfF]\d+(?:x\d+)?)\b", Keyword.Type),
            (r"-?0x[0-9a-fA-F_.]+(?:p[+-]?\d+)?|-?\d+(?:\.\d+)?", Number),
            (r"(\w+)(\.)(\w+)", bygroups(Name.Builtin, Punctuation, Name.Builtin)),
            (r"\b[a-z_][\w]*\b", Name.Builtin),
            (r"[=<>!+\-*/]+", Operator),
            (r"[()\[\]{},:]", Punctuation),
            (r".", Text),
        ]
    }


_FORMATTER = HtmlFormatter(cssclass=_CSS_CLASS, nowrap=False)


def clif_html(text: str) -> str:
    """`text` as a highlighted `<div class="hl"><pre>` block (escaped)."""
    return highlight(text, ClifLexer(), _FORMATTER)


def style_sheet() -> str:
    return str(_FORMATTER.get_style_defs(f".{_CSS_CLASS}"))
