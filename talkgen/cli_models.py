"""``talkgen models``: tiny test weights, downloads of real weights, verification."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group()
def models() -> None:
    """Model weights for the native engine (TALKGEN_MODELS_DIR)."""


def _default_dir() -> Path:
    from talkgen.settings import load_settings

    return load_settings().models_dir


@models.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--fp8", is_flag=True, help="Also write the DiT and adapters as fp8 e4m3fn `_scaled` files.")
def tiny(directory: Path, seed: int, fp8: bool) -> None:
    """Write the tiny preset (random weights, real layout) to DIRECTORY: for CPU demos and tests."""
    from talkgen.cli_support import reported_errors

    with reported_errors(False):
        from talkgen.engines.native.weights.tiny import write_tiny
        from talkgen.engines.native.weights.tiny_fp8 import write_tiny_fp8

        started = time.perf_counter()
        dit = write_tiny_fp8(directory, seed=seed) if fp8 else None
        if dit is None:
            write_tiny(directory, seed=seed)
    click.echo(f"tiny preset written to {directory} in {time.perf_counter() - started:.1f} s "
               f"(use TALKGEN_MODELS_DIR={directory}" + (f"; the DiT is the fp8 file {dit})" if dit else ")"))


@models.command()
@click.argument("name", default="infinitetalk-480p")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Target models dir (default TALKGEN_MODELS_DIR).")
@click.option("--skip-optional", is_flag=True, help="Skip optional files (the two-speaker adapter).")
@click.option("--skip", "skip", multiple=True, metavar="GROUP",
              help="Leave out a group of files: two-speakers, fast-preset (the distill LoRA). Repeatable.")
@click.option("--endpoint", envvar="HF_ENDPOINT", help="Hub endpoint (default https://huggingface.co).")
@click.option("--token", envvar="HF_TOKEN", help="Hub token for gated or private repos.")
def download(name: str, directory: Path | None, skip_optional: bool, skip: tuple[str, ...], endpoint: str | None,
             token: str | None) -> None:
    """Download and verify a model set (resumable: rerun after an interruption)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(False):
        from talkgen.engines.native.weights.download import download as run_download

        run_download(name, directory or _default_dir(), endpoint=endpoint, token=token,
                     include_optional=not skip_optional, skip=skip, report=click.echo)


@models.command()
@click.argument("name", default="infinitetalk-480p")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--skip", "skip", multiple=True, metavar="GROUP", help="A group left out at download (may be missing).")
def verify(name: str, directory: Path | None, skip: tuple[str, ...]) -> None:
    """Re-hash every file of a model set; exit 1 listing what is missing or corrupt."""
    from talkgen.cli_support import reported_errors

    with reported_errors(False):
        from talkgen.engines.native.weights.download import verify as run_verify

        problems = run_verify(name, directory or _default_dir(), skip)
    for path, problem in problems:
        click.echo(f"{path}: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{name}: all files intact")


@models.command(name="list")
def list_sets() -> None:
    """Model sets that `download` knows."""
    from talkgen.engines.native.weights.download import iter_manifest_summary, manifest_names

    for name in manifest_names():
        for line in iter_manifest_summary(name):
            click.echo(line)
    click.echo("tiny: random test weights, written locally by `talkgen models tiny DIR`")
