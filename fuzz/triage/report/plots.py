"""The overview's charts, drawn by matplotlib as SVG to inline in the page:
no script, no network, and text kept as text (small files)."""

from __future__ import annotations

import io
from contextlib import AbstractContextManager
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _style() -> AbstractContextManager[None]:
    return plt.rc_context(
        {
            "svg.fonttype": "none",  # text as <text>, not paths
            "svg.hashsalt": "callfuzz",  # the same ids on every run
            "font.size": 9,
        }
    )


# no RDF block naming its creator and date: smaller, and the same every run
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata=_NO_METADATA)
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prologue or doctype


def findings_over_time(series: dict[str, list[datetime]]) -> str | None:
    """Findings stored so far against time, one line per campaign label."""
    if not any(series.values()):
        return None
    with _style():
        fig, ax = plt.subplots(figsize=(7, 2.6))
        for label, moments in series.items():
            if moments:
                ax.step(
                    mdates.date2num(moments), range(1, len(moments) + 1), where="post", label=label
                )
        ax.set_ylabel("findings stored")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        fig.autofmt_xdate()
        ax.legend(loc="upper left", frameon=False)
        return _svg(fig)


def throughput(points: list[tuple[datetime, float, str]]) -> str | None:
    """Cases per second of each campaign at its start: a trend over campaigns
    (the database keeps one figure per campaign, not a series within one)."""
    if len(points) < 2:
        return None
    with _style():
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.plot(mdates.date2num([p[0] for p in points]), [p[1] for p in points], marker="o")
        for moment, rate, label in points:
            ax.annotate(
                label, (mdates.date2num(moment), rate), textcoords="offset points", xytext=(0, 5)
            )
        ax.set_ylabel("cases/s")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        fig.autofmt_xdate()
        return _svg(fig)
