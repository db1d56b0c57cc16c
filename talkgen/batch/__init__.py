"""Batches of requests: a JSONL read line by line, sharded, each request run into a video and a status record.

Used by every batch runtime (the Kubernetes runner, Modal's ``batch``, the client's status): one layout
and one record shape whatever runs the requests.
"""

from talkgen.batch.exit_codes import EXIT_CONFIG, EXIT_FINAL_FAILURE, EXIT_OK, EXIT_RETRYABLE
from talkgen.batch.records import is_final, read_record, record_url, run_item, video_url, write_record
from talkgen.batch.requests import BatchItem, read_requests, shard

__all__ = [
    "EXIT_CONFIG", "EXIT_FINAL_FAILURE", "EXIT_OK", "EXIT_RETRYABLE", "BatchItem", "is_final", "read_record",
    "read_requests", "record_url", "run_item", "shard", "video_url", "write_record",
]
