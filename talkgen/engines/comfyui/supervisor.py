"""Connect to ComfyUI, or start it from ``TALKGEN_COMFYUI_DIR`` and keep it up (one restart per crash).

Started as ``python main.py --listen <host> --port <port> --disable-auto-launch <TALKGEN_COMFYUI_ARGS>``
in that folder, under a watchdog (`watchdog.py`) that stops it when this process exits, however it exits;
ready when ``/system_stats`` answers. Its output goes to ``talkgen-comfyui.log`` there,
and the log's tail is in the error when it fails to start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from talkgen.engines.comfyui.client import ComfyClient
from talkgen.errors import EngineUnavailable
from talkgen.settings import Settings

log = logging.getLogger(__name__)
LOG_NAME = "talkgen-comfyui.log"
WATCHDOG = "talkgen.engines.comfyui.watchdog"
LOG_TAIL = 2000


class Supervisor:
    def __init__(self, settings: Settings, client: ComfyClient) -> None:
        self.settings = settings
        self.client = client
        self.folder = settings.comfyui_dir
        self.process: subprocess.Popen[bytes] | None = None  # the watchdog, which runs ComfyUI
        self._lifeline: int | None = None
        self.restarts = 0

    @property
    def owns_server(self) -> bool:
        return self.process is not None

    def ensure(self) -> None:
        """Return once a server answers; start one if allowed and none does."""
        if self.client.alive():
            return
        if self.folder is None or not (Path(self.folder) / "main.py").is_file():
            raise EngineUnavailable(
                f"No ComfyUI server answers at {self.settings.comfyui_url} (TALKGEN_COMFYUI_URL). Start one, or set "
                "TALKGEN_COMFYUI_DIR to a ComfyUI folder (with main.py) for talkgen to start.", retryable=True)
        self._start()

    def _start(self) -> None:
        parts = urlsplit(self.settings.comfyui_url)
        python = str(self.settings.comfyui_python or sys.executable)
        command = [python, "main.py", "--listen", parts.hostname or "127.0.0.1", "--port", str(parts.port or 8188),
                   "--disable-auto-launch", *self.settings.comfyui_args]
        folder = Path(self.folder)  # type: ignore[arg-type]
        log.info("starting ComfyUI: %s (in %s)", " ".join(command), folder)
        lifeline, self._lifeline = os.pipe()  # the write end stays here: the watchdog stops ComfyUI at its EOF
        try:
            with (folder / LOG_NAME).open("ab") as out:
                self.process = subprocess.Popen([sys.executable, "-m", WATCHDOG, "--", *command], cwd=folder,
                                                stdin=lifeline, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        finally:
            os.close(lifeline)
        deadline = time.monotonic() + self.settings.comfyui_start_timeout_s
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                self.stop()
                raise EngineUnavailable(f"ComfyUI exited with code {code} while starting: {self._log_tail()}",
                                        retryable=False)
            if self.client.alive():
                return
            time.sleep(0.5)
        self.stop()
        raise EngineUnavailable(f"ComfyUI did not answer within {self.settings.comfyui_start_timeout_s:g} s of "
                                f"starting (TALKGEN_COMFYUI_START_TIMEOUT_S): {self._log_tail()}", retryable=True)

    def recover(self) -> bool:
        """After a run failed with the server gone: restart it once if talkgen started it; True if it is back."""
        if self.client.alive():
            return True
        if not self.owns_server or self.restarts >= 1:
            return False
        self.restarts += 1
        log.warning("ComfyUI stopped answering; restarting it (restart %d)", self.restarts)
        self.stop()
        self._start()
        return True

    def stop(self) -> None:
        """Stop the server talkgen started (its watchdog stops ComfyUI's whole process group)."""
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        try:
            text = (Path(self.folder) / LOG_NAME).read_text(errors="replace")  # type: ignore[arg-type]
        except OSError:
            return "(no log)"
        return text[-LOG_TAIL:].strip() or "(empty log)"
