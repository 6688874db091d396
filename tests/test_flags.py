"""One reading of shared flags (fuzz.pipeline.filetest.settings), as
Cranelift reads a list of settings: the last setting wins, a bare name is
`true`. The runner (libcall convention, pinned register) and the export
(stack probes) used to read them three ways, first-wins among them."""

from __future__ import annotations

from fuzz.pipeline.filetest import flag_on, settings
from fuzz.triage.export import _outline_probestack


def test_the_last_setting_wins_and_a_bare_name_is_true() -> None:
    words = ["libcall_call_conv=isa_default", "enable_pinned_reg", "libcall_call_conv=tail"]
    assert settings(words) == {"libcall_call_conv": "tail", "enable_pinned_reg": "true"}
    assert flag_on(words, "enable_pinned_reg")
    assert not flag_on([*words, "enable_pinned_reg=false"], "enable_pinned_reg")
    assert flag_on(["enable_probestack=on"], "enable_probestack")
    assert not flag_on([], "enable_probestack")


def test_the_export_reads_flags_the_same_way() -> None:
    assert _outline_probestack(["set enable_probestack=true", "target x86_64"])
    assert not _outline_probestack(
        ["set enable_probestack=true probestack_strategy=inline", "target x86_64"]
    )
    assert not _outline_probestack(["set enable_probestack=true", "set enable_probestack=false"])
