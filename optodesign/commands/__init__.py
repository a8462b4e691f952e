"""CLI commands, one module each, imported lazily by :mod:`optodesign.cli`."""
