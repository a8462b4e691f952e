"""The ``optodesign`` command line: a thin click group.

Each command lives in ``optodesign/commands/<name>.py`` and is imported only when it runs, so
``optodesign --help`` starts fast and a broken optional dependency only breaks its command.
Library errors (:class:`optodesign.errors.UserError` and friends) become one line on stderr
and exit code 2.

Commands that compute (train, refine, verify, quickstart), when the CLI is the program, first
tune glibc malloc for their own process (:mod:`optodesign.allocator`; CPU training is
allocator-bound otherwise). It is done with ``mallopt`` at run time, so there is no re-exec:
``optodesign``, ``python -m optodesign`` and ``torchrun -m optodesign`` (each rank) behave
alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import json

import click

# name -> (module, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("optodesign.commands.train", "train",
              "Train a quantized design from a TOML config."),
    "export": ("optodesign.commands.export", "export",
               "Write GDSII/OASIS/STL for a trained design."),
    "verify": ("optodesign.commands.verify", "verify",
               "Simulate the written files under fab errors."),
    "quickstart": (
        "optodesign.commands.quickstart",
        "quickstart",
        "Train, export and verify the embedded default (no download).",
    ),
    "refine": ("optodesign.commands.refine", "refine", "Refine a design's levels discretely."),
    "import": ("optodesign.commands.import_map", "import_map",
               "Import a phase/transmission map made elsewhere as a design."),
    "compare": ("optodesign.commands.compare", "compare",
                "Table of runs' metrics and settings, overlaid training curves."),
}


#: commands whose process gets :func:`optodesign.allocator.tune_malloc` before it runs
COMPUTE_COMMANDS = frozenset({"train", "refine", "verify", "quickstart", "import"})

@click.command("debug-allocator", hidden=True)
def _debug_allocator() -> None:
    """Print, as JSON, what tune_malloc did and whether a 64 MiB block is mmapped now."""
    from . import allocator

    click.echo(json.dumps({"status": allocator.malloc_status,
                           "mmapped_64mib": allocator.mmapped(64 << 20)}))


HIDDEN_COMMANDS: dict[str, click.Command] = {"debug-allocator": _debug_allocator}


class LazyGroup(click.Group):
    #: True once called as a program (the ``optodesign`` script, ``python -m optodesign``):
    #: only then does the process belong to the command, so only then is malloc tuned.
    #: CliRunner and other in-process callers use ``.main()`` and keep their allocator.
    as_program = False

    def __call__(self, *args: object, **kwargs: object) -> object:
        LazyGroup.as_program = True
        return super().__call__(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _, _) in COMMANDS.items() if _available(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in HIDDEN_COMMANDS:
            return HIDDEN_COMMANDS[cmd_name]
        if cmd_name not in COMMANDS or not _available(COMMANDS[cmd_name][0]):
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optodesign")
@click.pass_context
def main(ctx: click.Context) -> None:
    """optodesign: train fabrication-aware diffractive optics, export GDS/STL, verify them.

    \b
    optodesign quickstart --out runs/quick              # all three steps, embedded data
    optodesign train examples/d2nn_digits.toml --out runs/d2nn
    optodesign export runs/d2nn --process thz-printed --out fab/d2nn
    optodesign verify fab/d2nn --report fab/d2nn/verify
    optodesign import lens.npy --pitch "0.4 mm" --wavelength "0.4 THz" \\
        --process thz-printed --distance "4 cm" --out runs/lens

    Commands that compute raise glibc malloc's mmap/trim thresholds for their own process
    (faster CPU training); OPTODESIGN_NO_MALLOC_TUNING=1 keeps glibc's defaults.
    """
    if LazyGroup.as_program and (ctx.invoked_subcommand in COMPUTE_COMMANDS
                                 or ctx.invoked_subcommand in HIDDEN_COMMANDS):
        from .allocator import tune_malloc

        tune_malloc()


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="optodesign")
