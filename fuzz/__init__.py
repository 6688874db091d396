"""callfuzz: differential fuzzing of Cranelift's call lowering. Packages follow
one case's data flow: `gen` makes it, `pipeline` runs and judges it,
`campaign` runs many, `triage` stores and buckets findings, `commands` is the
command line; `targets`, `values` and `relocations` are the facts beneath;
`bridge` chooses the Cranelift under test before `_cranelift` is loaded."""

from fuzz.bridge.load import install as _install_bridge_finder

_install_bridge_finder()
