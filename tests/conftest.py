"""Shared test set-up: hypothesis profiles ("ci" is reproducible, "dev"
explores), and a hermetic environment for every test and every child process
it starts: the crates.io index is a fixture file (never the live registry,
whose next release would change what a release line resolves to) and the
bridge cache is a fresh directory (never the user's)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

INDEX_FIXTURE = Path(__file__).parent / "data" / "crates-index" / "cranelift-codegen"
os.environ["CALLFUZZ_INDEX_URL"] = INDEX_FIXTURE.as_uri()
# CALLFUZZ_TEST_CACHE keeps real bridges built by CALLFUZZ_SLOW=1 runs between runs
if os.environ.get("CALLFUZZ_TEST_CACHE"):
    os.environ["CALLFUZZ_CACHE"] = os.environ["CALLFUZZ_TEST_CACHE"]
else:
    os.environ["CALLFUZZ_CACHE"] = tempfile.mkdtemp(prefix="callfuzz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CALLFUZZ_CACHE"], ignore_errors=True)
