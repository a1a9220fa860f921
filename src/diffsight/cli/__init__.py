"""The ``diffsight`` command line: thin shells that parse, build a config and call one library function."""
