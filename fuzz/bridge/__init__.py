"""The Cranelift under test is the user's choice: a release (`0.131`,
`0.128.4`) or a wasmtime checkout, named by `--cranelift` or the environment
variable `CALLFUZZ_CRANELIFT`. `spec` reads a choice, `build` builds the one
bridge source (`native/`) against it into a cache (`cache`), and `load` makes
`from fuzz import _cranelift` load the chosen bridge. With no choice the
bridge pip installed is used. Nothing here imports the bridge itself at import
time, so a choice can be made before anything loads it."""
