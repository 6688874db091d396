"""Coverage over Cranelift's own code: a bridge built with LLVM
SanitizerCoverage (`build`), the libFuzzer runtime it needs preloaded into
campaign workers (`preload`), its counters read in process and kept as
bitmaps (`elf`, `counters`), and those bitmaps mapped to Cranelift's
functions, source files and backends (`symbols`, `report`).

Nothing here imports `fuzz._cranelift` or the campaign: the campaign's
worker and the commands call in."""
