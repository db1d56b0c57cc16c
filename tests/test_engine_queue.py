"""One `TalkGen` shared by threads: inputs are prepared side by side, the engine is used in turn."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from talkgen.engine_queue import EngineQueue
from talkgen.errors import Cancelled
from tests.conftest import assert_no_leftovers
from tests.support.bar_engine import BarEngine


def _request(media_dir, **extra):  # type: ignore[no-untyped-def]
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"), "width": 128,
            "height": 128, **extra}


class _Gate:
    """Holds the first job inside the engine until released; records the order jobs entered it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.order: list[str] = []
        self.running = 0
        self.overlapped = False
        real = BarEngine.generate
        lock = threading.Lock()

        def generate(engine, job):  # type: ignore[no-untyped-def]
            with lock:
                self.running += 1
                self.overlapped |= self.running > 1
                self.order.append(job.id)
            try:
                self.inside.set()
                assert self.release.wait(30)
                real(engine, job)
            finally:
                with lock:
                    self.running -= 1

        monkeypatch.setattr(BarEngine, "generate", generate)


def test_jobs_wait_for_the_engine_in_order_while_their_inputs_are_prepared(service, media_dir, work_root,
                                                                            monkeypatch):
    gate = _Gate(monkeypatch)
    events: dict[str, list] = {name: [] for name in ("a", "b", "c")}

    def run(name: str):  # type: ignore[no-untyped-def]
        return service.generate(_request(media_dir, job_id=name), progress=events[name].append,
                                output=str(work_root.parent / f"{name}.mp4"))

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(run, "a")
        assert gate.inside.wait(30)
        second = pool.submit(run, "b")
        _wait_for(lambda: _queued(events["b"]))
        third = pool.submit(run, "c")
        _wait_for(lambda: _queued(events["c"]))
        # b finished fetching and preparing while a held the engine, and knows its place in line
        assert any(e.stage == "prepare" and e.fraction == 1.0 for e in events["b"])
        assert "waiting for the engine: 1 job ahead" in _queued(events["b"])
        assert "waiting for the engine: 2 jobs ahead" in _queued(events["c"])
        gate.release.set()
        results = [f.result(timeout=60) for f in (first, second, third)]
    assert gate.order == ["a", "b", "c"] and not gate.overlapped
    assert all(r.frames == results[0].frames for r in results)
    assert "waiting for the engine: 1 job ahead" in _queued(events["c"])  # the line moved up
    assert results[2].timings["queue"] > 0
    assert_no_leftovers(work_root)


def test_a_job_cancelled_while_waiting_leaves_the_line(service, media_dir, work_root, monkeypatch):
    gate = _Gate(monkeypatch)
    cancel = threading.Event()
    waiting: list = []
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(service.generate, _request(media_dir, job_id="holder"),
                            output=str(work_root.parent / "holder.mp4"))
        assert gate.inside.wait(30)
        second = pool.submit(service.generate, _request(media_dir, job_id="quitter"), progress=waiting.append,
                             cancel=cancel, output=str(work_root.parent / "quitter.mp4"))
        _wait_for(lambda: _queued(waiting))
        cancel.set()
        with pytest.raises(Cancelled):
            second.result(timeout=10)
        gate.release.set()
        assert first.result(timeout=60).frames > 0
    assert gate.order == ["holder"]
    assert_no_leftovers(work_root)


def test_cancel_all_stops_every_job_in_progress(service, media_dir, work_root, monkeypatch):
    gate = _Gate(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(service.generate, _request(media_dir, job_id=f"j{i}"),
                            output=str(work_root.parent / f"j{i}.mp4")) for i in range(2)]
        assert gate.inside.wait(30)
        _wait_for(lambda: service.cancel_all() == 2)
        gate.release.set()
        for job in jobs:
            with pytest.raises(Cancelled):
                job.result(timeout=30)
    assert_no_leftovers(work_root)


def test_queue_failure_in_a_turn_lets_the_next_job_in():
    queue = EngineQueue()
    with pytest.raises(RuntimeError), queue.turn(lambda ahead: None, lambda: None):
        raise RuntimeError("engine broke")
    with queue.turn(lambda ahead: None, lambda: None):
        assert queue.waiting == 1
    assert queue.waiting == 0


def _queued(events: list) -> str:
    return " | ".join(e.message for e in events if e.stage == "queue")


def _wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("condition not reached")
