"""The command line, one module per command family (``add_parser``, ``main``)."""
