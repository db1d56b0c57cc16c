"""``talkgen k8s run``: the entrypoint of each pod of a batch's Indexed Job (``python -m talkgen.k8s.run_cli``
runs it alone).

Exit codes (`talkgen.batch.exit_codes`): 0 all succeeded; 42 finished with a request that failed for good;
75 stopped or a request failed retryably (retry: finished requests are skipped, half-done ones resume);
78 cannot start (bad flags, missing requests file, misconfigured worker) — bad flags included, not click's 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from talkgen.batch.exit_codes import EXIT_CODES, EXIT_CONFIG
from talkgen.errors import InvalidConfig, TalkgenError

INDEX_ENV = "JOB_COMPLETION_INDEX"


class _ConfigExit(click.Command):
    """A usage mistake exits with EX_CONFIG (78), which the Job's podFailurePolicy fails the index on."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = EXIT_CONFIG
            raise


_EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {code:>2}  {meaning}" for code, meaning in EXIT_CODES.items())


@click.command("run", cls=_ConfigExit, epilog=_EPILOG)
@click.option("--requests", "requests_url", required=True, metavar="URL",
              help="The batch: a JSONL of requests (local path or s3://, gs://, ... URL).")
@click.option("--output", required=True, metavar="PREFIX",
              help="Where <key>.mp4 and its status <key>.json go (directory or storage prefix).")
@click.option("--shards", type=click.IntRange(min=1), required=True, help="How many shards the batch is cut in.")
@click.option("--index", type=click.IntRange(min=0), default=None,
              help=f"This pod's shard, 0-based (default: ${INDEX_ENV}, set by an Indexed Job).")
@click.option("--json", "as_json", is_flag=True, help="Print the shard's summary as JSON at the end.")
def run(requests_url: str, output: str, shards: int, index: int | None, as_json: bool) -> None:
    """Run one shard of a batch: each request into a video and a status JSON, skipping finished ones."""
    from talkgen.k8s.runner import ShardReport, execute_shard

    try:
        settings = _settings()
        shard_index = _index(index, shards)
    except TalkgenError as exc:
        report = ShardReport(index=index if index is not None else -1, count=shards, exit_code=EXIT_CONFIG,
                             error=exc.to_dict())
        _report_error(exc)
    else:
        report = execute_shard(requests_url, output, shard_index, shards, settings)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    sys.exit(report.exit_code)


def _settings() -> Any:
    from talkgen.settings import load_settings

    return load_settings()


def _index(index: int | None, shards: int) -> int:
    """--index, else $JOB_COMPLETION_INDEX; an index outside 0..shards-1 is a configuration error."""
    if index is None:
        raw = os.environ.get(INDEX_ENV)
        if raw is None:
            raise InvalidConfig(f"No shard index: pass --index, or run in an Indexed Job (which sets ${INDEX_ENV}).",
                                field="index")
        try:
            index = int(raw)
        except ValueError:
            raise InvalidConfig(f"${INDEX_ENV} is {raw[:40]!r}, not a shard number.", field="index") from None
    if not 0 <= index < shards:
        raise InvalidConfig(f"Shard index {index} is outside 0..{shards - 1} (--shards {shards}): render the Job "
                            "with completions equal to the shards.", field="index")
    return index


def _report_error(exc: TalkgenError) -> None:
    where = f" [{exc.field}]" if exc.field else ""
    click.echo(f"error ({exc.code}{where}): {exc.message}", err=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run()
