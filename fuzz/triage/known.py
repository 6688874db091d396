"""The registry of known findings (`corpus/known.toml`): what the project has
triaged already, and how a campaign's finding is matched against it.

An entry (`[[finding]]`) names one finding: `id`, `kind` (one of `KINDS`),
`summary`, `upstream` (an issue, or empty), `fixed_by` (optional), the
Cranelift `versions` it is known on, the `corpus` file that reproduces it
(relative to the registry; a list when one pattern covers several files), and
the pattern a finding must match:

- `targets` (target names, or `interpreter` for an interpreter defect) and
  `verdict`, both required;
- `file`: the Rust source file a compile panic is raised in, as the bucket key
  names it but without the line (`cranelift-codegen/src/isa/x64/abi.rs`): the
  line moves between Cranelift versions, the file and the message stay;
- `message`: a regular expression searched in the panic message, or else in
  the target's outcome (a crash's fault, a compile error's message, a trap
  code), or in a dead worker's exit (`SIGABRT`, `hang`);
- `call_shape`: a regular expression searched in the finding's call shape
  (the conventions and call forms its case uses, `preserve_all:call,...`);
- `key`: a regular expression the whole bucket key must match;
- `reproducer = true`: only the corpus files themselves match (their text,
  comment lines and blank lines aside), not another case with the symptom;
- `fixed_in`: the first release without the bug. A match on that release or
  a later one is not the known bug but a regression of it: a new bucket
  (`...|regression:ID`) whose note names the entry.

Every entry needs a fingerprint (`file`, `message`, `key` or `reproducer`),
and a wrong-result entry needs `reproducer = true` or a `key` on what the
wrong result depends on (fuzz.triage.attribution: `convention C`, `tail
calls`): positions alone say nothing of what broke them, so a looser pattern
would take in unrelated miscompilations on the same target.

A finding that matches an entry is bucketed under its own bucket key plus
`|known:ID`, so a known bucket never takes in a finding that does not match
the entry (that one lands in the plain key's bucket, `new`), and the known
bucket opens with status `known`, `known_ref` = ID and a note saying what the
registry knows.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.pipeline.oracle import BENIGN, INTERPRETER, Verdict
from fuzz.targets import TARGETS
from fuzz.triage.buckets import panic_location
from fuzz.triage.records import FindingRecord
from fuzz.versions import Version, parse_version

KINDS = (
    "bug",
    "documented limitation",
    "deliberate assert",
    "emulator defect",
    "interpreter defect",
)
# verdicts a finding can have: everything that is not agreement or an abstention
VERDICTS = tuple(v.value for v in Verdict if v is not Verdict.AGREE and v not in BENIGN)
KNOWN_SUFFIX = "|known:"

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_REQUIRED = {"id", "kind", "summary", "versions", "corpus", "targets", "verdict"}
_OPTIONAL = {
    "upstream",
    "fixed_by",
    "fixed_in",
    "file",
    "message",
    "call_shape",
    "key",
    "reproducer",
}
REGRESSION_SUFFIX = "|regression:"
_DIRECTIVE = re.compile(r";\s*(run|print)\s*:")


class RegistryError(Exception):
    """A registry that cannot be used; the message is one line naming why."""


@dataclass(frozen=True)
class KnownFinding:
    id: str
    kind: str
    summary: str
    versions: tuple[str, ...]
    corpus: tuple[Path, ...]
    targets: tuple[str, ...]
    verdict: str
    upstream: str = ""
    fixed_by: str = ""
    fixed_in: Version | None = None  # the first release without it
    file: str | None = None
    message: re.Pattern[str] | None = None
    call_shape: re.Pattern[str] | None = None
    key: re.Pattern[str] | None = None
    # the corpus files' essential texts, when only the files themselves match
    reproducer: frozenset[str] | None = None

    def matches(self, record: FindingRecord) -> bool:
        if target_of(record) not in self.targets or record.verdict != self.verdict:
            return False
        if self.file is not None and panic_file(record) != self.file:
            return False
        if self.message is not None and not self.message.search(message_of(record)):
            return False
        shape = record.details.get("call_shape", "")
        if self.call_shape is not None and not self.call_shape.search(shape):
            return False
        if self.key is not None and not self.key.fullmatch(record.bucket_key):
            return False
        return self.reproducer is None or essential_text(record.clif) in self.reproducer

    def regressed_on(self, version: str) -> bool:
        """Whether a finding on `version` comes after the fix: a regression,
        not the known bug (a version callfuzz cannot read is not)."""
        if self.fixed_in is None:
            return False
        try:
            return parse_version(version) >= self.fixed_in
        except ValueError:
            return False

    def reference(self) -> str:
        """Where to read about it: `wasmtime#13959`, or that no issue exists."""
        ref = self.upstream or "no upstream issue"
        return f"{ref}, fixed by {self.fixed_by}" if self.fixed_by else ref

    def note(self, registry: Path | None, version: str) -> str:
        """The note a bucket opens with: what the registry knows."""
        seen = ", ".join(self.versions)
        if version not in self.versions:
            seen += f" (not yet listed for {version})"
        where = f" in {registry}" if registry else ""
        return (
            f"known finding {self.id}{where}: {self.kind}; {self.reference()}; "
            f"known on Cranelift {seen}; reproducer {self.files()}; {self.summary}"
        )

    def files(self) -> str:
        return ", ".join(p.name for p in self.corpus)


@dataclass(frozen=True)
class Registry:
    path: Path | None
    entries: tuple[KnownFinding, ...] = ()

    def match(self, record: FindingRecord) -> KnownFinding | None:
        """The first entry the finding matches."""
        return next((e for e in self.entries if e.matches(record)), None)

    def get(self, entry_id: str) -> KnownFinding | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def apply(self, record: FindingRecord) -> FindingRecord:
        """The finding as a campaign records it: in its entry's own bucket,
        with the status and note the bucket opens with, if it is known; in a
        bucket of its own, new, if it is a known bug seen again after its fix."""
        entry = self.match(record)
        if entry is None:
            return record
        if entry.regressed_on(record.cranelift_version):
            fixed = ".".join(map(str, entry.fixed_in or ()))
            return dataclasses.replace(
                record,
                bucket_key=f"{record.bucket_key}{REGRESSION_SUFFIX}{entry.id}",
                bucket_title=f"regression of {entry.id}: {record.bucket_title}",
                known_note="",
                regression_note=(
                    f"regression of known finding {entry.id} ({entry.reference()}): "
                    f"fixed in {fixed}, seen again on Cranelift {record.cranelift_version}"
                ),
            )
        return dataclasses.replace(
            record,
            bucket_key=known_key(record.bucket_key, entry.id),
            known_ref=entry.id,
            known_note=entry.note(self.path, record.cranelift_version),
        )


def known_key(key: str, entry_id: str) -> str:
    return f"{key}{KNOWN_SUFFIX}{entry_id}"


def base_key(key: str, known_ref: str | None) -> str:
    """The bucket key `fuzz.triage.buckets.bucket_for` gives the findings of a
    bucket (a known bucket's key without its `|known:ID`)."""
    return key.removesuffix(f"{KNOWN_SUFFIX}{known_ref}") if known_ref else key


def target_of(record: FindingRecord) -> str:
    words = record.target.split()
    return words[0] if words else ""


def panic_file(record: FindingRecord) -> str | None:
    """The source file of a compile panic, as in its bucket key, line dropped."""
    panic = record.details.get("panic")
    if not panic:
        return None
    return re.sub(r":\d+$", "", panic_location(f"panic at {panic['location']}"))


def message_of(record: FindingRecord) -> str:
    """The panic message, a dead worker's exit, the first call-contract
    violation (kind, where, class), or the target's outcome detail."""
    d = record.details
    if "panic" in d:
        return d["panic"]["message"]
    if "exit" in d:
        return d["exit"]
    if d.get("violations"):
        first = d["violations"][0]
        return f"{first['kind']} {first['where']} ({first['class']})"
    outcome = d.get("outcomes", {}).get(record.target) or {}
    return outcome.get("detail", "")


def essential_text(clif: str) -> str:
    """A case's text without comment lines (run and print lines stay), blank
    lines and indentation: what the reproducer of an entry is compared by."""
    lines = (line.strip() for line in clif.splitlines())
    return "\n".join(
        line for line in lines if line and (not line.startswith(";") or _DIRECTIVE.match(line))
    )


# --- loading ---------------------------------------------------------------------


def load(path: Path) -> Registry:
    """The registry at `path`; RegistryError (one line) if it is unreadable or
    malformed."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise RegistryError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise RegistryError(f"{path} is not UTF-8 text ({err.reason})") from None
    except tomllib.TOMLDecodeError as err:
        raise RegistryError(f"{path} is not valid TOML: {err}") from None
    extra = set(data) - {"finding"}
    if extra:
        raise RegistryError(
            f"{path}: unknown top-level key {sorted(extra)[0]!r} (want [[finding]])"
        )
    findings = data.get("finding", [])
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        raise RegistryError(f"{path}: `finding` must be an array of tables ([[finding]])")
    entries: list[KnownFinding] = []
    for number, raw in enumerate(findings, 1):
        entry = _entry(path, number, raw)
        if any(e.id == entry.id for e in entries):
            raise RegistryError(f"{path}: finding {number}: duplicate id {entry.id!r}")
        entries.append(entry)
    return Registry(path, tuple(entries))


def _entry(path: Path, number: int, raw: dict[str, Any]) -> KnownFinding:
    name = raw.get("id")
    where = f"{path}: finding {number}" + (f" ({name})" if isinstance(name, str) else "")

    def bad(problem: str) -> RegistryError:
        return RegistryError(f"{where}: {problem}")

    missing = sorted(_REQUIRED - set(raw))
    if missing:
        raise bad(f"missing {missing[0]!r}")
    unknown = sorted(set(raw) - _REQUIRED - _OPTIONAL)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")

    def text(field: str) -> str:
        value = raw.get(field, "")
        if not isinstance(value, str):
            raise bad(f"{field!r} must be a string")
        return value

    def texts(field: str, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
        value = raw[field]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise bad(f"{field!r} must be a non-empty list of strings")
        if allowed is not None:
            known = set(allowed)
            for v in value:
                if v not in known:
                    raise bad(f"unknown {field[:-1]} {v!r} (one of: {', '.join(sorted(known))})")
        return tuple(value)

    def pattern(field: str) -> re.Pattern[str] | None:
        if field not in raw:
            return None
        try:
            return re.compile(text(field))
        except re.error as err:
            raise bad(f"{field!r} is not a regular expression: {err}") from None

    entry_id = text("id")
    if not _ID.fullmatch(entry_id):
        raise bad(f"id {entry_id!r} must be lower-case letters, digits, '-', '_' or '.'")
    kind = text("kind")
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    verdict = text("verdict")
    if verdict not in VERDICTS:
        raise bad(f"{verdict!r} is not a finding's verdict (one of: {', '.join(VERDICTS)})")
    if isinstance(raw["corpus"], str):
        raw = {**raw, "corpus": [raw["corpus"]]}
    corpus = tuple(path.parent / name for name in texts("corpus"))
    texts_of: list[str] = []
    for file in corpus:
        try:
            texts_of.append(essential_text(file.read_text()))
        except (OSError, UnicodeDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise bad(f"cannot read corpus file {file}: {why}") from None
    fixed_in: Version | None = None
    if "fixed_in" in raw:
        try:
            fixed_in = parse_version(text("fixed_in"))
        except ValueError:
            raise bad(
                f"'fixed_in' must be a release such as 0.131.3, not {raw['fixed_in']!r}"
            ) from None
    reproducer = raw.get("reproducer", False)
    if not isinstance(reproducer, bool):
        raise bad("'reproducer' must be true or false")
    entry = KnownFinding(
        id=entry_id,
        kind=kind,
        summary=text("summary"),
        versions=texts("versions"),
        corpus=corpus,
        # an interpreter defect is a finding on the interpreter
        targets=texts("targets", (*TARGETS, INTERPRETER)),
        verdict=verdict,
        upstream=text("upstream"),
        fixed_by=text("fixed_by"),
        fixed_in=fixed_in,
        file=text("file") if "file" in raw else None,
        message=pattern("message"),
        call_shape=pattern("call_shape"),
        key=pattern("key"),
        reproducer=frozenset(texts_of) if reproducer else None,
    )
    if entry.file is None and entry.message is None and entry.key is None and not reproducer:
        raise bad("no fingerprint: give 'file', 'message', 'key' or 'reproducer = true'")
    if verdict == Verdict.WRONG_RESULT and not reproducer and entry.key is None:
        raise bad(
            "a wrong-result entry needs 'reproducer = true' or a 'key' naming what it "
            "depends on (`...|wrong result|convention C`): positions alone cannot tell "
            "one miscompilation from another"
        )
    return entry
