"""The `tokenpool` command line: one module per command, its arguments and a `main`."""
