"""Which executor runs a target line: unicorn is the fast path; qemu-user
runs what unicorn cannot (ISA extensions it lacks, code it would run wrong)
and referees unicorn's divergences. `--executor` overrides the choice."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from fuzz.pipeline.qemu import binary_version, installed_facts, missing_reason, qemu_installed
from fuzz.targets import Target

UNICORN = "unicorn"
QEMU = "qemu-user"


class ExecutorChoice(enum.StrEnum):
    # unicorn where it can, qemu-user where it cannot; qemu-user referees divergences
    AUTO = "auto"
    UNICORN = "unicorn"  # unicorn only: what it cannot run abstains, no referee
    QEMU = "qemu"  # qemu-user only
    BOTH = "both"  # as auto, and qemu-user runs every unicorn run too


@dataclass(frozen=True)
class Route:
    executor: str | None  # UNICORN, QEMU or None (abstains with `reason`)
    referee: bool = False  # qemu-user re-runs unicorn's divergences
    reason: str = ""


def route(
    target: Target, flags_on: frozenset[str], choice: ExecutorChoice, unicorn_gap: str = ""
) -> Route:
    """The executor for a target line with ISA flags `flags_on`; `unicorn_gap`
    names code unicorn would run wrong (found once the image is linked)."""
    lacking = sorted(flags_on & target.emulator_lacks)
    unicorn_ok = not lacking and not unicorn_gap
    setup = target.qemu
    qemu_lacking = sorted(flags_on & installed_facts(setup).lacks) if setup is not None else []
    installed = qemu_installed(target)
    qemu_ok = setup is not None and not qemu_lacking and installed

    def why_not_qemu() -> str:
        if setup is None:
            return "qemu-user does not run this target"
        if not installed:
            return missing_reason(target)
        version = binary_version(setup.binary)
        return f"qemu-user {version} lacks {', '.join(qemu_lacking)}"

    unicorn_why = unicorn_gap or f"unicorn lacks {', '.join(lacking)}"
    if choice is ExecutorChoice.UNICORN:
        return Route(UNICORN) if unicorn_ok else Route(None, reason=unicorn_why)
    if choice is ExecutorChoice.QEMU:
        return Route(QEMU) if qemu_ok else Route(None, reason=why_not_qemu())
    if unicorn_ok:
        return Route(UNICORN, referee=qemu_ok)
    if qemu_ok:
        return Route(QEMU)
    return Route(None, reason=f"{unicorn_why}; {why_not_qemu()}")


def for_installed_qemu(target: Target) -> Target:
    """`target` as the generator may use it here: its qemu-only ISA flags
    without those the installed qemu-user lacks (qemu 7.2 runs no Zcb, Zfa,
    Zicond: its qemu-only riscv64 cases keep Zba/Zbb/Zbs/Zbkb/Zfh and run).
    Without qemu-user they stay: such cases abstain, saying it is missing."""
    if target.qemu is None or not qemu_installed(target):
        return target
    lacks = installed_facts(target.qemu).lacks
    kept = tuple(f for f in target.qemu_isa_flags if f not in lacks)
    return (
        target
        if kept == target.qemu_isa_flags
        else dataclasses.replace(target, qemu_isa_flags=kept)
    )
