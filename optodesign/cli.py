"""The ``optodesign`` command line: a thin click group.

Each command lives in ``optodesign/commands/<name>.py`` and is imported only when it runs, so
``optodesign --help`` starts fast and a broken optional dependency only breaks its command.
Library errors (:class:`optodesign.errors.UserError` and friends) become one line on stderr
and exit code 2.
"""

from __future__ import annotations

import importlib
import importlib.util

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
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _, _) in COMMANDS.items() if _available(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
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
def main() -> None:
    """optodesign: train fabrication-aware diffractive optics, export GDS/STL, verify them.

    \b
    optodesign quickstart --out runs/quick              # all three steps, embedded data
    optodesign train examples/d2nn_digits.toml --out runs/d2nn
    optodesign export runs/d2nn --process thz-printed --out fab/d2nn
    optodesign verify fab/d2nn --report fab/d2nn/verify
    """


if __name__ == "__main__":  # pragma: no cover
    main()
