"""``python -m optodesign``: the same command line as the ``optodesign`` script.

Also the entry point for ``torchrun -m optodesign ...``. The allocator tuning of computing
commands happens inside the process (see :mod:`optodesign.cli`), so nothing is re-executed.
"""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="optodesign")
