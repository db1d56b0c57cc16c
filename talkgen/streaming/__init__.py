"""Live HLS output: a playlist and one MPEG-TS segment per window, next to the job's video.

Event sent to ``TalkGen.generate(..., on_event=...)`` once per segment, in order::

    {"event": "segment", "job_id": str, "window": int, "index": int, "url": str, "playlist": str,
     "frames": int, "seconds": float, "start": float}

``url`` and ``playlist`` are local paths, storage URLs, or presigned https URLs where the storage signs (S3).
"""

from talkgen.streaming.plan import stream_plan
from talkgen.streaming.segmenter import PLAYLIST, STATE, Segment, Segmenter, segment_name
from talkgen.streaming.store import Store, stream_folder

__all__ = ["PLAYLIST", "STATE", "Segment", "Segmenter", "Store", "segment_name", "stream_folder", "stream_plan"]
