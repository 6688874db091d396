"""The Jinja environments for the templates in templates/: Markdown (nothing
escaped: it is pasted as written) and HTML (everything escaped unless marked
safe: stored titles and values are arbitrary text)."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_LOADER = PackageLoader("fuzz.triage.report", "templates")


@cache
def markdown() -> Environment:
    return Environment(
        loader=_LOADER,
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def html() -> Environment:
    return Environment(
        loader=_LOADER,
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
