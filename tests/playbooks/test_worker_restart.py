"""The response worker can stop and start again (a replica loses, then regains, leadership)."""

from __future__ import annotations

import threading
import time

from playbooks.worker import ResponseWorker


class GatedRunner:
    """Records incident ids; blocks on ``gate`` while running ``block_on`` (a test double of
    :class:`playbooks.runner.PlaybookRunner`, to unit-test the worker that calls it)."""

    def __init__(self, block_on: str) -> None:
        self.block_on, self.ran = block_on, []
        self.entered, self.gate = threading.Event(), threading.Event()

    def run(self, incident_id: str) -> None:
        if incident_id == self.block_on:
            self.entered.set()
            self.gate.wait(5)
        self.ran.append(incident_id)


def _wait(predicate, seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)
    return predicate()


def test_worker_runs_again_after_a_stop_that_left_work_queued():
    runner = GatedRunner(block_on="I-1")
    worker = ResponseWorker(runner)  # type: ignore[arg-type]
    worker.submit(["I-1", "I-2"])
    worker.start()
    assert runner.entered.wait(3)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert _wait(worker._stopping.is_set)
    runner.gate.set()  # I-1 finishes; the worker stops before I-2 (re-queued on the next election)
    stopper.join(5)
    assert runner.ran == ["I-1"]

    worker.start()  # elected again
    worker.submit(["I-3"])
    try:
        assert _wait(lambda: "I-3" in runner.ran), f"the restarted worker ran nothing: {runner.ran}"
    finally:
        worker.stop()
