"""Responses leave a worker without its own directories: the log keeps them, the caller gets a stand-in word."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talkgen.service import TalkGen


def server_paths(tg: TalkGen) -> dict[str, str]:
    """This worker's own directories, longest first, and the words that stand in for them in responses."""
    settings = tg.settings
    named = {"<models dir>": [settings.models_dir, settings.native_transformer],
             "<work dir>": [settings.work_dir], "<ComfyUI dir>": [settings.comfyui_dir]}
    paths: dict[str, str] = {}
    for word, dirs in named.items():
        for path in dirs:
            if path is not None:
                for form in {str(Path(path).expanduser()), os.path.realpath(Path(path).expanduser())}:
                    if len(form) > 1:
                        paths[form] = word
    return dict(sorted(paths.items(), key=lambda item: -len(item[0])))


def without_server_paths(out: dict[str, Any], tg: TalkGen | None) -> dict[str, Any]:
    """An error response without this worker's directories (the log keeps them)."""
    if tg is not None and isinstance(out.get("error"), str):
        for path, word in server_paths(tg).items():
            out["error"] = out["error"].replace(path, word)
    return out
