"""A fake `cargo` (installed on PATH by the `fake_cargo` fixture in
tests/conftest.py): records how it was run and its manifest, then fails or
"builds" by handing back a copy of the bridge pip installed, as cargo's JSON
messages name artifacts.

Each call appends to $FAKE_CARGO_LOG one JSON line (argv and the build's
environment) and the manifest, then a `=====` line. $FAKE_CARGO_FAIL fails
with $FAKE_CARGO_ERROR; $FAKE_CARGO_SLEEP pauses while "compiling"."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

# what the builders set for cargo (None: not set)
ENV = (
    "CARGO_TARGET_DIR",
    "CALLFUZZ_CRANELIFT_VERSION",
    "PYO3_PYTHON",
    "RUSTFLAGS",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_PROFILE_RELEASE_STRIP",
)

args = sys.argv[1:]
with open(os.environ["FAKE_CARGO_LOG"], "a") as log:
    call = {"argv": args, "env": {name: os.environ.get(name) for name in ENV}}
    log.write(json.dumps(call) + "\n" + Path("Cargo.toml").read_text() + "\n=====\n")
print("   Compiling callfuzz-native v0.1.0", file=sys.stderr, flush=True)
if os.environ.get("FAKE_CARGO_FAIL"):
    default = "error[E0425]: cannot find value `F16` in module `types`"
    print(os.environ.get("FAKE_CARGO_ERROR", default), file=sys.stderr)
    sys.exit(101)
time.sleep(float(os.environ.get("FAKE_CARGO_SLEEP", "0")))
# with --target, cargo puts its output under the triple
triple = args[args.index("--target") + 1] if "--target" in args else ""
out = os.path.join(os.environ["CARGO_TARGET_DIR"], triple, "release")
os.makedirs(out, exist_ok=True)
lib = os.path.join(out, "lib_cranelift.so")
shutil.copy(os.environ["FAKE_CARGO_LIB"], lib)
artifact = {
    "reason": "compiler-artifact",
    "package_id": "path+file:///x/native#callfuzz-native@0.1.0",
    "target": {"kind": ["cdylib"], "name": "_cranelift"},
    "filenames": [lib],
}
print(json.dumps(artifact), flush=True)
print("    Finished `release` profile", file=sys.stderr)
