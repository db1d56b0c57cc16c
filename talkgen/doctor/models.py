"""The native engine's model files: present, the default preset's LoRA, and intact against the lock file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from talkgen.doctor.result import Check, error, ok, warning
from talkgen.settings import Settings

TINY = "tiny"


def checks(settings: Settings, verify: bool = False) -> list[Check]:
    """Nothing for other engines; else presence, the preset's LoRA, then the lock (``verify``: re-hash all)."""
    from talkgen.engines.native.weights.layout import ModelFiles

    if settings.engine != "native":
        return []
    files = ModelFiles.from_settings(settings)
    root = files.root
    if not root.is_dir():
        return [error("models", f"the models dir {root} does not exist (TALKGEN_MODELS_DIR)", _download_fix(root))]
    name = files.model_set.name
    missing = files.missing()
    if missing:
        where = ", ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in missing.values())
        return [error("models", f"{name} in {root}: missing {', '.join(missing)} (expected at {where})",
                      _download_fix(root, name))]
    out = [ok("models", f"{name} in {root}: every component present")]
    lora = files.missing_preset_lora(settings.native_preset)
    if lora is not None:
        out.append(error("preset lora", f"the {settings.native_preset} preset's LoRA is missing ({lora})",
                         f"{_download_fix(root, name)} (it fetches only what is missing), or set "
                         "TALKGEN_NATIVE_PRESET to a preset without it"))
    out.append(_verified(root, name, verify))
    return out


def _download_fix(root: Path, name: str = "infinitetalk-480p") -> str:
    name = "infinitetalk-480p" if name == TINY else name
    return (f"talkgen models download {name} --dir {root} (or `talkgen models tiny {root}` for CPU test "
            "weights), or point TALKGEN_MODELS_DIR at the models")


def _verified(root: Path, name: str, full: bool) -> Check:
    """The set's files against its manifest and lock: sizes only, or every hash with ``full``."""
    from talkgen.engines.native.weights.download import LOCK_FILE, load_manifest, manifest_files, manifest_names

    if name == TINY:
        return ok("model files", "tiny test preset (random weights): no lock file to verify against")
    if name not in manifest_names():
        return warning("model files", f"{name!r} is not a model set talkgen knows: its files are not verified",
                       f"use a set from `talkgen models list`, or keep {root} as it is at your own risk")
    lock_path = root / LOCK_FILE
    if not lock_path.is_file():
        return warning("model files", f"no {LOCK_FILE} in {root}: the files were not downloaded by talkgen and "
                       "are not verified", f"talkgen models download {name} --dir {root} (verifies what is "
                       "there, fetches what is missing)")
    items = manifest_files(load_manifest(name))
    skipped = _skipped_groups(root, items)
    if full:
        return _rehashed(root, name, skipped)
    lock: dict[str, Any] = json.loads(lock_path.read_text())
    problems, unverified, present = [], 0, 0
    for item in items:
        path = root / item.target
        if not path.is_file():
            if not (item.optional or item.group in skipped):
                problems.append(f"{item.target}: missing")
            continue
        present += 1
        size, recorded = path.stat().st_size, lock.get(str(item.target))
        expected = item.size if item.size is not None else (recorded or {}).get("size")
        if expected is not None and size != expected:
            problems.append(f"{item.target}: {size} bytes, expected {expected}")
        elif recorded is None:
            unverified += 1
    if problems:
        return error("model files", f"{len(problems)} of {len(items)} files of {name} are missing or damaged: "
                     + "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else ""),
                     f"talkgen models download {name} --dir {root} (refetches them)")
    if unverified:
        return warning("model files", f"{unverified} files of {name} are not in {LOCK_FILE}",
                       f"talkgen doctor --verify (or talkgen models verify {name} --dir {root})")
    return ok("model files", f"{present} files of {name} match {LOCK_FILE} by size (`--verify` re-hashes them)")


def _skipped_groups(root: Path, items: list[Any]) -> set[str]:
    """Groups with no file present: left out at download (`--skip GROUP`)."""
    groups: dict[str, bool] = {}
    for item in items:
        if item.group:
            groups[item.group] = groups.get(item.group, False) or (root / item.target).is_file()
    return {group for group, any_present in groups.items() if not any_present}


def _rehashed(root: Path, name: str, skipped: set[str]) -> Check:
    from talkgen.engines.native.weights.download import verify

    problems = verify(name, root, skipped)
    if problems:
        shown = "; ".join(f"{path}: {problem}" for path, problem in problems[:5])
        return error("model files", f"{len(problems)} files of {name} are missing or corrupt (full re-hash): "
                     f"{shown}", f"talkgen models download {name} --dir {root} (refetches them)")
    return ok("model files", f"every file of {name} re-hashed and intact")
