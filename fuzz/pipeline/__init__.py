"""One file through every executor: filetest reading, signature check,
trampoline, linker, emulator, oracle, and the runner that ties them."""
