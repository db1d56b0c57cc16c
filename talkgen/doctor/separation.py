"""The vocal separator (requests separate vocals by default, on every engine): its package and its file."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

from talkgen.doctor.result import Check, error, ok, warning
from talkgen.settings import Settings

NAME = "vocal separator"
CONSEQUENCE = "requests that leave separate_vocals at its default (true) fail with engine_unavailable"


def checks(settings: Settings) -> list[Check]:
    """Missing package or file: a warning (requests with ``separate_vocals: false`` still run); a file that is
    not a whole safetensors file: an error."""
    from talkgen.separation import model_path

    if importlib.util.find_spec("bs_roformer") is None or importlib.util.find_spec("torch") is None:
        return [warning(NAME, f"bs-roformer or torch is not installed: {CONSEQUENCE}",
                        "pip install 'talkgen[separation]' (the native extra has it), or have clients send "
                        "separate_vocals: false")]
    path = model_path(settings)
    if not path.is_file():
        return [warning(NAME, f"{path} is missing (TALKGEN_SEPARATION_MODEL): {CONSEQUENCE}",
                        f"talkgen models download infinitetalk-480p --dir {settings.models_dir} (fetches only what "
                        "is missing), point TALKGEN_SEPARATION_MODEL at the seed's MelBandRoformer_fp16.safetensors, "
                        "or have clients send separate_vocals: false")]
    problem = _header_problem(path)
    if problem:
        return [error(NAME, f"{path} is not a whole safetensors file: {problem}",
                      f"delete it and run talkgen models download infinitetalk-480p --dir {settings.models_dir}")]
    return [ok(NAME, f"{path} ({path.stat().st_size / 1e6:.1f} MB)")]


def _header_problem(path: Path) -> str | None:
    """Why the file's safetensors header is not whole (None when it is): cheap, no tensor is read."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a header"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return f"the header claims {length} bytes but the file has {size}"
        try:
            header = json.loads(fh.read(length))
        except ValueError as exc:
            return f"its header is not JSON ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if not ends:
        return "it holds no tensors"
    if 8 + length + max(ends) > size:
        return f"truncated: the tensors end at byte {8 + length + max(ends)}, the file at {size}"
    return None
