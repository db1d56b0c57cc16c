"""Where a job streams: the folder beside its video, or none."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.errors import InvalidRequest
from talkgen.outputs import with_name
from talkgen.streaming.store import stream_folder

if TYPE_CHECKING:
    from talkgen.request import TalkRequest
    from talkgen.settings import Settings


def stream_plan(req: TalkRequest, settings: Settings, planned: str | None, job_id: str,
                stream_dir: str | Path | None) -> tuple[str | None, str | None]:
    """(the stream folder or None, the video destination). Segments go beside the video; a trusted caller's
    ``stream_dir`` wins. With only the server default (``TALKGEN_STREAM``) on, the video goes to
    ``TALKGEN_OUTPUT_URL`` when it would otherwise be inline, and an inline job does not stream."""
    if stream_dir is not None:
        return str(stream_dir), planned
    if not (req.stream if req.stream is not None else settings.stream):
        return None, planned
    if planned is None and settings.output_url:
        planned = with_name(settings.output_url, job_id)
    if planned is None:
        if req.stream:
            raise InvalidRequest(
                "`stream` needs a place to write the segments while the job runs, but the video would be "
                "returned inline: set `output_url` (a storage URL or prefix) or `network_volume: true`, or "
                "leave `stream` out.", field="stream")
        return None, planned
    return stream_folder(planned), planned
