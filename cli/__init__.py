"""The `bgnn` command-line interface (installed as the import package `bgnn_cli`)."""
