"""One module per ``minivess-bundle`` command: ``add_parser(subparsers)`` and ``main(args)``."""
