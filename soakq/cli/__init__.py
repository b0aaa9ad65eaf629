"""The `soakq` command line (the only layer that prints)."""
