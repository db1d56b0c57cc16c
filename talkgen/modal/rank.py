"""One rank of a multi-GPU call: ``torchrun --nproc_per_node=N -m talkgen.modal.rank JOB.json``.

Every rank builds a `TalkGen` from the container's settings (the request stays untrusted: its paths and
output URL are checked as on one GPU) and renders the job with context parallelism. Rank 0 delivers the
video, prints progress lines and segment events (a streaming job's), and writes the response (or the error
dict) to the job file's ``result`` path. Other ranks keep their copy in a temporary file that is removed.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

PROGRESS_MARK = "TALKGEN_PROGRESS "
EVENT_MARK = "TALKGEN_EVENT "


def run(job_file: str) -> int:
    from talkgen.engines.native.model.parallel import is_main_rank
    from talkgen.errors import TalkgenError
    from talkgen.service import TalkGen
    from talkgen.shutdown import cancel_on_signals

    job = json.loads(Path(job_file).read_text())
    main = is_main_rank()
    response: dict[str, Any]
    try:
        service = TalkGen()
        cancel_on_signals(service)
        if main:
            def progress(event: Any) -> None:
                print(PROGRESS_MARK + json.dumps(event.to_dict()), flush=True)

            def on_event(event: dict[str, Any]) -> None:
                print(EVENT_MARK + json.dumps(event), flush=True)

            response = service.generate(job["request"], output=job["output"], job_id=job["job_id"],
                                        progress=progress, on_event=on_event).to_response()
        else:  # the same work, kept to itself: no delivery, no stream
            request = {**job["request"], "output_url": None, "network_volume": False, "stream": False}
            with tempfile.TemporaryDirectory(prefix="talkgen-rank-") as tmp:
                service.generate(request, output=str(Path(tmp) / "video.mp4"), job_id=job["job_id"])
            return 0
    except TalkgenError as exc:
        response = exc.to_dict()
    if main:
        Path(job["result"]).write_text(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
