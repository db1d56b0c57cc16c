"""`talkgen models download NAME`: fetch a model set from the Hugging Face Hub, resumably, and verify it.

The manifest (``manifests/<name>.json``) lists every file with its size and sha256 where published.
Files come from the Hub's ``/resolve/`` endpoint over plain HTTP into ``<file>.part``; an interrupted
download (dropped connection, killed process) continues from the ``.part`` with a Range request, within
the run and on the next run. Finished files are checked for size and hash and recorded in
``talkgen-manifest.lock.json`` (sha256 of every file), so a rerun skips what is already verified and a
later `verify` notices corruption.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkgen.engines.native.weights.layout import PRESET_FILE, ModelSet
from talkgen.errors import EngineUnavailable, FetchFailed, InvalidRequest

MANIFESTS = Path(__file__).parent / "manifests"
LOCK_FILE = "talkgen-manifest.lock.json"
HASH_CHUNK = 8 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
DEFAULT_ENDPOINT = "https://huggingface.co"
ATTEMPTS = 4
"""Tries per file within one run (each resumes where the last stopped)."""


@dataclass(frozen=True)
class ManifestFile:
    repo: str
    revision: str
    path: str
    target: Path  # relative to the models dir
    size: int | None
    sha256: str | None
    optional: bool
    group: str | None = None  # what the file is for (`--skip GROUP` leaves it out)


def manifest_names() -> list[str]:
    return sorted(p.stem for p in MANIFESTS.glob("*.json"))


def load_manifest(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        path = MANIFESTS / f"{name_or_path}.json"
    if not path.is_file():
        raise InvalidRequest(f"Unknown model set {name_or_path!r}: use one of {', '.join(manifest_names())} or a "
                             "manifest file path.", field="name")
    return json.loads(path.read_text())


def manifest_files(manifest: dict[str, Any]) -> list[ManifestFile]:
    return [
        ManifestFile(repo=c["repo"], revision=c.get("revision", "main"), path=f["path"],
                     target=Path(c["dir"]) / f["path"], size=f.get("size"), sha256=f.get("sha256"),
                     optional=bool(f.get("optional")), group=f.get("group"))
        for c in manifest["components"] for f in c["files"]
    ]


def manifest_groups(manifest: dict[str, Any]) -> set[str]:
    return {f.group for f in manifest_files(manifest) if f.group}


def selected_files(manifest: dict[str, Any], include_optional: bool = True,
                   skip: Iterable[str] = ()) -> list[ManifestFile]:
    """The files to fetch: all but the optional ones (unless included) and those of skipped groups."""
    skip = set(skip)
    unknown = skip - manifest_groups(manifest)
    if unknown:
        raise InvalidRequest(f"No group {', '.join(sorted(unknown))} in {manifest['name']}: use one of "
                             f"{', '.join(sorted(manifest_groups(manifest)))}.", field="skip")
    return [f for f in manifest_files(manifest)
            if (include_optional or not f.optional) and f.group not in skip]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_lock(root: Path) -> dict[str, Any]:
    path = root / LOCK_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_lock(root: Path, lock: dict[str, Any]) -> None:
    tmp = root / (LOCK_FILE + ".tmp")
    tmp.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    tmp.replace(root / LOCK_FILE)


def check_file(root: Path, item: ManifestFile, lock: dict[str, Any]) -> str | None:
    """None when ``item`` is present and intact, else why not."""
    path = root / item.target
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if item.size is not None and size != item.size:
        return f"size {size} bytes, expected {item.size}"
    recorded = lock.get(str(item.target))
    if recorded and recorded.get("size") == size and (item.sha256 is None or recorded.get("sha256") == item.sha256):
        return None
    digest = sha256_of(path)
    if item.sha256 is not None and digest != item.sha256:
        return f"sha256 {digest}, expected {item.sha256}"
    lock[str(item.target)] = {"size": size, "sha256": digest, "repo": item.repo, "revision": item.revision}
    return None


def download(name: str, root: Path, *, endpoint: str | None = None, token: str | None = None,
             include_optional: bool = True, skip: Iterable[str] = (),
             report: Callable[[str], None] = print) -> Path:
    """Download and verify a model set into ``root``; returns ``root``. Safe to rerun (resumes)."""
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    manifest = load_manifest(name)
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    items = selected_files(manifest, include_optional, skip)
    need = sum(f.size or 0 for f in items)
    free = shutil.disk_usage(root).free
    lock = _read_lock(root)
    for i, item in enumerate(items, start=1):
        problem = check_file(root, item, lock)
        if problem is None:
            report(f"[{i}/{len(items)}] {item.target}: verified")
            continue
        if problem != "missing":  # corrupt: fetch it again rather than trusting the hub cache's metadata
            report(f"[{i}/{len(items)}] {item.target}: {problem}; fetching it again")
            (root / item.target).unlink()
        report(f"[{i}/{len(items)}] {item.target}: downloading ({_human(item.size)})")
        if item.size and need > free:
            report(f"warning: about {_human(need)} needed, {_human(free)} free under {root}")
        fetch_resumable(resolve_url(endpoint, item), root / item.target, token, item)
        problem = check_file(root, item, lock)
        _write_lock(root, lock)
        if problem is not None:
            (root / item.target).unlink(missing_ok=True)
            raise EngineUnavailable(f"{item.target} from {item.repo}@{item.revision} is corrupt ({problem}); it "
                                    "was deleted: rerun the command to fetch it again.", retryable=True)
    _write_lock(root, lock)
    model_set = (ModelSet.from_dict(manifest) if "presets" in manifest
                 else ModelSet(name=manifest["name"], files=manifest.get("files", {})))
    model_set.save(root)
    report(f"{manifest['name']}: {len(items)} files verified in {root} ({PRESET_FILE} written)")
    return root


def resolve_url(endpoint: str, item: ManifestFile) -> str:
    from urllib.parse import quote

    return f"{endpoint}/{item.repo}/resolve/{quote(item.revision, safe='')}/{quote(item.path)}"


def fetch_resumable(url: str, dest: Path, token: str | None, item: ManifestFile) -> None:
    """GET ``url`` into ``dest`` through ``dest.part``, resuming with Range requests; retries transport errors."""
    import httpx

    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    what = f"{item.repo}/{item.path}@{item.revision}"
    for attempt in range(1, ATTEMPTS + 1):
        start = part.stat().st_size if part.exists() else 0
        if item.size is not None and start == item.size:
            break
        try:
            with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)) as client, \
                    client.stream("GET", url, headers={**headers, **({"Range": f"bytes={start}-"} if start else {})}) \
                    as response:
                if response.status_code == 416 and start:  # nothing left to send: the part is complete
                    break
                if response.status_code in (401, 403, 404):
                    raise FetchFailed(f"{what}: the hub answered {response.status_code}. Check the repo, revision "
                                      "and HF_TOKEN (gated repos need an accepted licence).", retryable=False)
                response.raise_for_status()
                mode = "ab" if response.status_code == 206 else "wb"  # 200: the server ignored Range, start over
                with part.open(mode) as fh:
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                        fh.write(chunk)
            break
        except FetchFailed:
            raise
        except (httpx.HTTPError, OSError) as exc:
            if attempt == ATTEMPTS:
                raise FetchFailed(f"Download of {what} failed ({type(exc).__name__}: {exc}); rerun the same command "
                                  "to resume from the partial file.", retryable=True) from exc
            time.sleep(min(2.0**attempt, 30.0))
    part.replace(dest)


def verify(name: str, root: Path, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(file, problem)`` for every file of the set that is missing or corrupt (full re-hash); files of
    ``skip`` groups and optional files may be missing.

    Corrupt files lose their lock entry, so the next `download` fetches them again.
    """
    root = Path(root).expanduser()
    lock = _read_lock(root)
    problems = []
    manifest = load_manifest(name)
    skipped = {f.target for f in manifest_files(manifest)} - {f.target for f in selected_files(manifest, True, skip)}
    for item in manifest_files(manifest):
        fresh: dict[str, Any] = {}
        problem = check_file(root, item, fresh)
        if problem is None:
            lock.update(fresh)
        else:
            lock.pop(str(item.target), None)
            if not ((item.optional or item.target in skipped) and problem == "missing"):
                problems.append((str(item.target), problem))
    if root.is_dir():
        _write_lock(root, lock)
    return problems


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1000  # type: ignore[assignment]
    return ""


def iter_manifest_summary(name: str) -> Iterator[str]:
    manifest = load_manifest(name)
    files = manifest_files(manifest)
    known = sum(f.size or 0 for f in files)
    approx = sum(f.get("approx_gb", 0) for c in manifest["components"] for f in c["files"] if not f.get("size"))
    yield f"{manifest['name']}: {manifest.get('description', '')}"
    yield f"  {len(files)} files, about {_human(int(known + approx * 1e9))}"
