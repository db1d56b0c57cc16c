"""Download one flavour's ComfyUI model files (workflows/versions.json) into DEST/<folder>/<file>, at build time.

  python fetch_models.py --versions workflows/versions.json --flavour native --dest /models/comfyui

The list is ``models[flavour]`` (``folder/file``, exactly what the shipped workflows' loaders name, wav2vec2
included); ``model_sources[file]`` is the Hugging Face repo, optionally followed by the folder the file is in.
A repo revision can be pinned in ``model_revisions[repo]``; without one the build takes the repo's current
main and records the commit it got. DEST/talkgen-models.lock.json records repo, revision, path, size and
sha256 of every file. Nothing is downloaded at run time (the seed's wav2vec2 was, on every fresh worker).
Needs huggingface_hub (installed with ComfyUI's requirements); set HF_TOKEN for gated repos.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

# The repository root when run from a checkout (in a build the script sits alone in /tmp: pass --versions).
ROOT = Path(__file__).resolve().parent.parent.parent
LOCK = "talkgen-models.lock.json"


def wanted(versions: dict, flavour: str) -> list[tuple[str, str, str, str]]:
    """(folder, file, repo, folder hint in the repo) for each model file the flavour's workflows load."""
    flavours = sorted(versions["models"]) if flavour == "all" else [flavour]
    out = []
    for entry in sorted({m for f in flavours for m in versions["models"][f]}):
        folder, name = entry.split("/", 1)
        source = versions["model_sources"][name].split()
        out.append((folder, name, source[0], source[1].strip("/") if len(source) > 1 else ""))
    return out


def locate(files: list[str], name: str, hint: str) -> str:
    """The file's path in the repo: under the hint if given, else the only file with that name."""
    matches = [f for f in files if f == name or f.endswith("/" + name)]
    if hint:
        matches = [f for f in matches if f == f"{hint}/{name}"] or matches
    if len(matches) != 1:
        raise SystemExit(f"{name}: {len(matches)} matches in the repo ({', '.join(matches) or 'none'})")
    return matches[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--versions", type=Path, default=ROOT / "workflows" / "versions.json")
    parser.add_argument("--flavour", required=True, help="native, wrapper or all")
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    from huggingface_hub import HfApi, hf_hub_download

    versions = json.loads(args.versions.read_text())
    pins = versions.get("model_revisions", {})
    api = HfApi()
    lock = []
    for folder, name, repo, hint in wanted(versions, args.flavour):
        info = api.model_info(repo, revision=pins.get(repo, "main"), files_metadata=False)
        path = locate([s.rfilename for s in info.siblings or []], name, hint)
        target = args.dest / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.dest) as tmp:
            got = Path(hf_hub_download(repo, path, revision=info.sha, local_dir=tmp))
            shutil.move(str(got), str(target))
        lock.append({"file": f"{folder}/{name}", "repo": repo, "revision": info.sha, "path": path,
                     "size": target.stat().st_size, "sha256": sha256(target)})
        print(f"{repo}@{info.sha[:12]} {path} -> {target} ({target.stat().st_size / 1e9:.2f} GB)", flush=True)
    (args.dest / LOCK).write_text(json.dumps(lock, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
