"""The run loop's guest program (fuzz.pipeline.qemu.loop): what qemu-user
runs, without a gdbstub, to serve the harness's requests.

It is a loop. Each turn, it reads one request (at most REQUEST_SIZE bytes,
one atomic pipe write) from its stdin:

    word 0: n, how many system calls follow
    word 1: 0, or the stack pointer to `rt_sigreturn` with afterwards
    then n entries of 8 words: number, six arguments, and the result
    (the loop stores it there)

It makes the n system calls in order. Then either it writes the request
back to fd 1 (the harness reads the results) and waits for the next one,
or, with word 1 set, it sets SP there and calls `rt_sigreturn`: every
register, the PC included, comes from the signal frame the harness wrote
there. That starts a run.

A run ends in a signal (the sentinel return address faults, a trap, a
crash, the deadline's SIGALRM). The handler, on the alternate stack,
records its stack pointer (the frame's address) and its siginfo and
ucontext arguments (HEADER), writes them, the whole frame and the slots
(REPORT_IOV: the harness sets the slots' length per run) to fd 1 (the
report), and goes back to the loop. Every handler blocks SIGALRM, and the
loop never unblocks it: a late alarm waits for the next run's
`rt_sigreturn` (whose frame unblocks it) instead of interrupting the loop.
To resume a stopped run, the harness sends a frame back to the same
address with a request that enters it.

The sources are GNU as; `CODE` holds them assembled (tests/test_qemu_loop.py
assembles them again, where the cross assemblers are installed, and compares).
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.pipeline.qemu.elf import ALT_STACK, ALT_STACK_SIZE, DATA_AT

REQUEST_AT = DATA_AT + 0x1000
REQUEST_SIZE = 0x800
ENTRY_WORDS = 8
MAX_CALLS = (REQUEST_SIZE - 16) // (ENTRY_WORDS * 8)
HEADER_AT = DATA_AT + 0x1800  # the handler's SP, siginfo and ucontext addresses
REPORT_IOV_AT = DATA_AT + 0x1840  # {HEADER_AT, 24}, {frame, ALT_TOP - frame}, {slots, n}
RUN_IOV_AT = DATA_AT + 0x1880  # stack top, slots, frame
ALT_TOP = ALT_STACK + ALT_STACK_SIZE

_SETS = f"""\
    .set REQ, {REQUEST_AT:#x}
    .set REQ_SIZE, {REQUEST_SIZE:#x}
    .set HDR, {HEADER_AT:#x}
    .set REPORT_IOV, {REPORT_IOV_AT:#x}
    .set ALT_TOP, {ALT_TOP:#x}
"""


@dataclass(frozen=True)
class GuestProgram:
    source: str  # GNU as, after _SETS
    assembler: tuple[str, ...]  # the command that assembles it (binutils)
    code: bytes
    handler: int  # the signal handler's offset in `code`

    @property
    def text(self) -> str:
        return _SETS + self.source


_X86_64 = """\
loop:
    xor %edi, %edi
    mov $REQ, %esi
    mov $REQ_SIZE, %edx
    xor %eax, %eax              # read
    syscall
    test %rax, %rax
    jle quit                    # the harness is gone
    mov $REQ, %ebx
    mov (%rbx), %rbp            # n
    lea 16(%rbx), %r12
next:
    test %rbp, %rbp
    jz done
    mov (%r12), %rax
    mov 8(%r12), %rdi
    mov 16(%r12), %rsi
    mov 24(%r12), %rdx
    mov 32(%r12), %r10
    mov 40(%r12), %r8
    mov 48(%r12), %r9
    syscall
    mov %rax, 56(%r12)
    add $64, %r12
    dec %rbp
    jmp next
done:
    mov 8(%rbx), %r13
    test %r13, %r13
    jnz enter
    mov $1, %edi
    mov $REQ, %esi
    mov $REQ_SIZE, %edx
    mov $1, %eax                # write
    syscall
    jmp loop
enter:
    mov %r13, %rsp
    mov $15, %eax               # rt_sigreturn
    syscall
quit:
    xor %edi, %edi
    mov $231, %eax              # exit_group
    syscall
handler:
    mov $HDR, %ebx
    mov %rsp, (%rbx)
    mov %rsi, 8(%rbx)
    mov %rdx, 16(%rbx)
    mov $REPORT_IOV, %esi
    mov %rsp, 16(%rsi)
    mov $ALT_TOP, %ecx
    sub %rsp, %rcx
    mov %rcx, 24(%rsi)
    mov $1, %edi
    mov $3, %edx
    mov $20, %eax               # writev
    syscall
    jmp loop
"""

_AARCH64 = """\
loop:
    movz x19, #(REQ & 0xffff)
    movk x19, #(REQ >> 16), lsl #16
    mov x0, #0
    mov x1, x19
    mov x2, #REQ_SIZE
    mov x8, #63                 // read
    svc #0
    cmp x0, #0
    b.le quit                   // the harness is gone
    ldr x20, [x19]              // n
    add x21, x19, #16
next:
    cbz x20, done
    ldp x8, x0, [x21]
    ldp x1, x2, [x21, #16]
    ldp x3, x4, [x21, #32]
    ldr x5, [x21, #48]
    svc #0
    str x0, [x21, #56]
    add x21, x21, #64
    sub x20, x20, #1
    b next
done:
    ldr x22, [x19, #8]
    cbnz x22, enter
    mov x0, #1
    mov x1, x19
    mov x2, #REQ_SIZE
    mov x8, #64                 // write
    svc #0
    b loop
enter:
    mov sp, x22
    mov x8, #139                // rt_sigreturn
    svc #0
quit:
    mov x0, #0
    mov x8, #94                 // exit_group
    svc #0
handler:
    movz x9, #(HDR & 0xffff)
    movk x9, #(HDR >> 16), lsl #16
    mov x10, sp
    str x10, [x9]
    str x1, [x9, #8]
    str x2, [x9, #16]
    movz x11, #(REPORT_IOV & 0xffff)
    movk x11, #(REPORT_IOV >> 16), lsl #16
    str x10, [x11, #16]
    movz x12, #(ALT_TOP & 0xffff)
    movk x12, #(ALT_TOP >> 16), lsl #16
    sub x12, x12, x10
    str x12, [x11, #24]
    mov x0, #1
    mov x1, x11
    mov x2, #3
    mov x8, #66                 // writev
    svc #0
    b loop
"""

_RISCV64 = """\
    .option norvc
    .option norelax
loop:
    li a0, 0
    li a1, REQ
    li a2, REQ_SIZE
    li a7, 63                   # read
    ecall
    blez a0, quit               # the harness is gone
    li t0, REQ
    ld t1, 0(t0)                # n
    addi t0, t0, 16
next:
    beqz t1, done
    ld a7, 0(t0)
    ld a0, 8(t0)
    ld a1, 16(t0)
    ld a2, 24(t0)
    ld a3, 32(t0)
    ld a4, 40(t0)
    ld a5, 48(t0)
    ecall
    sd a0, 56(t0)
    addi t0, t0, 64
    addi t1, t1, -1
    j next
done:
    li t0, REQ
    ld t2, 8(t0)
    bnez t2, enter
    li a0, 1
    li a1, REQ
    li a2, REQ_SIZE
    li a7, 64                   # write
    ecall
    j loop
enter:
    mv sp, t2
    li a7, 139                  # rt_sigreturn
    ecall
quit:
    li a0, 0
    li a7, 94                   # exit_group
    ecall
handler:
    li t0, HDR
    sd sp, 0(t0)
    sd a1, 8(t0)
    sd a2, 16(t0)
    li t0, REPORT_IOV
    sd sp, 16(t0)
    li t1, ALT_TOP
    sub t1, t1, sp
    sd t1, 24(t0)
    li a0, 1
    mv a1, t0
    li a2, 3
    li a7, 66                   # writev
    ecall
    j loop
"""

_S390X = """\
loop:
    llilf %r9, REQ
    lghi %r2, 0
    lgr %r3, %r9
    lghi %r4, REQ_SIZE
    lghi %r1, 3                 # read
    svc 0
    ltgr %r2, %r2
    jle quit                    # the harness is gone
    lg %r10, 0(%r9)             # n
    la %r11, 16(%r9)
next:
    ltgr %r10, %r10
    jz done
    lg %r1, 0(%r11)
    lmg %r2, %r7, 8(%r11)
    svc 0
    stg %r2, 56(%r11)
    la %r11, 64(%r11)
    aghi %r10, -1
    j next
done:
    lg %r12, 8(%r9)
    ltgr %r12, %r12
    jnz enter
    lghi %r2, 1
    lgr %r3, %r9
    lghi %r4, REQ_SIZE
    lghi %r1, 4                 # write
    svc 0
    j loop
enter:
    lgr %r15, %r12
    lghi %r1, 173               # rt_sigreturn
    svc 0
quit:
    lghi %r2, 0
    lghi %r1, 248               # exit_group
    svc 0
handler:
    llilf %r9, HDR
    stg %r15, 0(%r9)
    stg %r3, 8(%r9)
    stg %r4, 16(%r9)
    llilf %r11, REPORT_IOV
    stg %r15, 16(%r11)
    llilf %r12, ALT_TOP
    sgr %r12, %r15
    stg %r12, 24(%r11)
    lghi %r2, 1
    lgr %r3, %r11
    lghi %r4, 3
    lghi %r1, 146               # writev
    svc 0
    j loop
"""

# assembled from the sources above (see the module docstring)
_X86_64_CODE = (
    "31ffbe00300040ba0008000031c00f054885c07e6ebb00300040488b2b4c8d63104885ed7432498b0424498b"
    "7c2408498b742410498b5424184d8b5424204d8b4424284d8b4c24300f0549894424384983c44048ffcdebc9"
    "4c8b6b084d85ed7518bf01000000be00300040ba00080000b8010000000f05eb874c89ecb80f0000000f0531"
    "ffb8e70000000f05bb003800404889234889730848895310be4038004048896610b9000002404829e148894e"
    "18bf01000000ba03000000b8140000000f05e939ffffff"
)
_AARCH64_CODE = (
    "130086d21300a8f2000080d2e10313aa020081d2e80780d2010000d41f0000f10d030054740240f975420091"
    "540100b4a80240a9a10a41a9a31242a9a51a40f9010000d4a01e00f9b5020191940600d1f7ffff17760640f9"
    "f60000b5200080d2e10313aa020081d2080880d2010000d4e4ffff17df020091681180d2010000d4000080d2"
    "c80b80d2010000d4090087d20900a8f2ea0300912a0100f9210500f9220900f90b0887d20b00a8f26a0900f9"
    "0c0080d24c00a8f28c010acb6c0d00f9200080d2e1030baa620080d2480880d2010000d4cbffff17"
)
_RISCV64_CODE = (
    "13050000b7350040371600001b0606809308f00373000000635ca006b732004003b3020093820201630a0302"
    "83b8020003b5820083b5020103b6820183b6020203b7820283b702037300000023bca202938202041303f3ff"
    "6ff01ffdb732004083b382006390030213051000b7350040371600001b06068093080004730000006ff01ff8"
    "138103009308b00873000000130500009308e00573000000b74200409b82028023b0220023b4b20023b8c200"
    "b74200409b82028423b82200370302403303234023bc62001305100093850200130630009308200473000000"
    "6ff05ff2"
)
_S390X_CODE = (
    "c09f40003000a7290000b9040039a7490800a71900030a00b9020022a7c40032e3a09000000441b09010b902"
    "00aaa7840012e310b0000004eb27b00800040a00e320b038002441b0b040a7abffffa7f4ffeee3c090080004"
    "b90200cca774000da7290001b9040039a7490800a71900040a00a7f4ffc7b90400fca71900ad0a00a7290000"
    "a71900f80a00c09f40003800e3f090000024e33090080024e34090100024c0bf40003840e3f0b0100024c0cf"
    "40020000b90900cfe3c0b0180024a7290001b904003ba7490003a71900920a00a7f4ff98"
)

GUESTS: dict[str, GuestProgram] = {
    "x86_64": GuestProgram(_X86_64, ("as", "--64"), bytes.fromhex(_X86_64_CODE), 0x8C),
    "aarch64": GuestProgram(
        _AARCH64, ("aarch64-linux-gnu-as",), bytes.fromhex(_AARCH64_CODE), 0x8C
    ),
    "riscv64": GuestProgram(
        _RISCV64, ("riscv64-linux-gnu-as", "-march=rv64gc"), bytes.fromhex(_RISCV64_CODE), 0x9C
    ),
    "s390x": GuestProgram(
        _S390X, ("s390x-linux-gnu-as", "-march=z13"), bytes.fromhex(_S390X_CODE), 0x8A
    ),
}
