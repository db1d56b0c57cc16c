"""An in-process stand-in for Modal's spawn / FunctionCall: a thread pool running `Worker.generate`.

``gate`` holds every job before it starts (so a test sees IN_QUEUE); cancelling sets the job's cancel event
(a running job stops at its next check with ``cancelled``) or drops a job that has not started.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from talkgen.modal.jobs_api import CallState
from talkgen.modal.worker import Worker


class LocalJobs:
    def __init__(self, worker: Worker, workers: int = 1) -> None:
        self.worker = worker
        self.pool = ThreadPoolExecutor(workers)
        self.gate = threading.Event()
        self.gate.set()
        self.jobs: dict[str, tuple[Future[dict[str, Any]], threading.Event]] = {}

    def spawn(self, request: dict[str, Any]) -> str:
        call_id = "fc-" + uuid.uuid4().hex[:20]
        cancel = threading.Event()

        def run() -> dict[str, Any]:
            self.gate.wait()
            return self.worker.generate(request, call_id=call_id, cancel=cancel)

        self.jobs[call_id] = (self.pool.submit(run), cancel)
        return call_id

    def lookup(self, call_id: str) -> CallState:
        future, cancel = self.jobs[call_id]  # KeyError is a LookupError: the API answers 404
        if future.cancelled():
            return CallState(done=True, cancelled=True)
        if not future.done():
            return CallState(done=False)
        output = future.result()
        stopped = cancel.is_set() and output.get("error_code") == "cancelled"
        return CallState(done=True, output=output, cancelled=stopped)

    def cancel(self, call_id: str) -> None:
        future, cancel = self.jobs[call_id]
        cancel.set()
        future.cancel()

    def close(self) -> None:
        self.gate.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
