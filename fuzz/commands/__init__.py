"""The `callfuzz` command line: one module per command and their shared
helpers; the only place that ties campaigns to the reducer."""
