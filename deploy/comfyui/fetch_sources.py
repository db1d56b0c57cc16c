"""Fetch ComfyUI and the node packs at the exact commits in workflows/versions.json (the one source of truth).

Used by deploy/comfyui.Dockerfile, and on a build host without GitHub access:

  # in the image build (SOURCES=github): a GitHub tarball of each commit, never a clone of a branch
  python fetch_sources.py --versions workflows/versions.json --flavour wrapper --dest /opt/ComfyUI

  # offline (SOURCES=local): from bare git snapshots (e.g. /work/.mirror/<owner>+<name>/repo; a fork that has
  # the commit is as good as the original, a commit id names its content), into a folder the build copies
  TALKGEN_SOURCES_MIRROR=/work/.mirror python deploy/comfyui/fetch_sources.py --flavour wrapper \\
      --dest build/comfyui-sources

  # inside the build, for prepared sources: do they match versions.json?
  python fetch_sources.py --versions workflows/versions.json --flavour wrapper --dest /opt/ComfyUI --check

ComfyUI goes to DEST, each pack to DEST/custom_nodes/<name>, without .git. DEST/talkgen-sources.json records
each repo and commit; DEST/talkgen-requirements.txt collects ComfyUI's, each pack's and the flavour's extra
Python requirements for one pip install (opencv-python becomes opencv-python-headless: same cv2, no GUI
libraries on a server). Standard library only: it runs in a bare python image before anything is installed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The repository root when run from a checkout (in a build the script sits alone in /tmp: pass --versions).
ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_VERSIONS = ROOT / "workflows" / "versions.json"
RECORD = "talkgen-sources.json"
REQUIREMENTS = "talkgen-requirements.txt"
TARBALL = "https://codeload.github.com/{repo}/tar.gz/{commit}"
SHA = re.compile(r"[0-9a-f]{40}")
HEADLESS = {"opencv-python": "opencv-python-headless", "opencv-contrib-python": "opencv-contrib-python-headless"}


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    commit: str  # 40 hex digits
    path: str  # relative to DEST: "" for ComfyUI, custom_nodes/<name> for a pack

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]


def plan(versions: dict, flavour: str, repos: frozenset[str] = frozenset()) -> list[Source]:
    """What the build fetches for a flavour ("native", "wrapper" or "all"): every commit comes from versions.json.

    ``repos`` narrows it to some of them (an offline test build with only some snapshots at hand)."""
    flavours = sorted(versions["node_packs"]) if flavour == "all" else [flavour]
    if any(f not in versions["node_packs"] for f in flavours):
        raise SystemExit(f"unknown flavour {flavour!r}: versions.json has {', '.join(sorted(versions['node_packs']))}")
    core = versions["comfyui"]
    out = [Source(core["repo"], core["commit"], "")]
    for f in flavours:
        for pack in versions["node_packs"][f]:
            if pack["repo"] not in {s.repo for s in out}:
                out.append(Source(pack["repo"], pack["commit"], f"custom_nodes/{pack['repo'].split('/', 1)[1]}"))
    if repos:
        unknown = repos - {s.repo for s in out}
        if unknown:
            raise SystemExit(f"not in versions.json for flavour {flavour}: {', '.join(sorted(unknown))}")
        out = [s for s in out if s.repo in repos]
    for source in out:
        if not SHA.fullmatch(source.commit):
            raise SystemExit(f"{source.repo}: {source.commit!r} is not a full 40-digit commit id in versions.json")
    return out


def python_packages(versions: dict, flavour: str) -> list[str]:
    flavours = sorted(versions["python_packages"]) if flavour == "all" else [flavour]
    return sorted({p for f in flavours for p in versions["python_packages"].get(f, [])})


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def find_in_mirror(mirror: Path, source: Source) -> Path | None:
    """A bare git dir under the mirror that has the commit: the repo itself first, then any fork of it."""
    owner, name = source.repo.split("/", 1)
    exact = [mirror / f"{owner}+{name}" / "repo", mirror / f"{owner}+{name}", mirror / f"{name}.git"]
    forks = sorted(p for p in mirror.glob(f"*+{name}/repo") if p not in exact)
    for candidate in [*exact, *forks]:
        if not candidate.is_dir():
            continue
        found = subprocess.run(["git", f"--git-dir={candidate}", "cat-file", "-e", f"{source.commit}^{{commit}}"],
                               capture_output=True)
        if found.returncode == 0:
            return candidate
    return None


def from_mirror(git_dir: Path, source: Source, target: Path) -> None:
    """Check out exactly the commit (a fresh repository fetching that one commit), then drop .git."""
    target.mkdir(parents=True)
    _git("-C", str(target), "init", "-q")
    try:
        _git("-C", str(target), "fetch", "-q", "--depth", "1", str(git_dir), source.commit)
    except subprocess.CalledProcessError as exc:  # e.g. a snapshot stored without its largest files
        raise SystemExit(f"{source.repo} @ {source.commit}: {git_dir} has the commit but not all its files: "
                         f"{exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc}") from None
    _git("-C", str(target), "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD")
    head = _git("-C", str(target), "rev-parse", "HEAD")
    if head != source.commit:
        raise SystemExit(f"{source.repo}: checked out {head}, expected {source.commit}")
    shutil.rmtree(target / ".git")


def from_github(source: Source, target: Path) -> None:
    """The GitHub tarball of exactly that commit (its top folder is <name>-<commit>)."""
    url = TARBALL.format(repo=source.repo, commit=source.commit)
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            data = response.read()
    except OSError as exc:  # URLError, timeouts: say what to do on a host without GitHub
        raise SystemExit(f"{source.repo} @ {source.commit}: cannot download {url}: {exc}. Without GitHub access, "
                         "prepare the sources from git snapshots (TALKGEN_SOURCES_MIRROR) and build with "
                         "SOURCES=local (deploy/README.md).") from None
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: no absolute paths, links out or devices
            tar.extractall(tmp, filter="data")
        else:
            tar.extractall(tmp)  # GitHub's archive of a pinned commit
        (top,) = Path(tmp).iterdir()
        if not top.name.endswith(source.commit):
            raise SystemExit(f"{url}: unexpected archive folder {top.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(top), str(target))


def requirements(dest: Path, sources: list[Source], extra: list[str]) -> str:
    lines = ["# Written by deploy/comfyui/fetch_sources.py: ComfyUI's, each node pack's and the flavour's packages."]
    for source in sources:
        req = dest / source.path / "requirements.txt"
        if not req.is_file():
            continue
        lines.append(f"# {source.repo} @ {source.commit}")
        for raw in req.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]
            if name.lower() in HEADLESS:
                line = HEADLESS[name.lower()] + line[len(name):]
            lines.append(line)
    if extra:
        lines.append("# versions.json python_packages")
        lines.extend(extra)
    return "\n".join(lines) + "\n"


def fetch(versions: dict, flavour: str, dest: Path, mirror: Path | None,
          repos: frozenset[str] = frozenset()) -> list[Source]:
    sources = plan(versions, flavour, repos)
    record = _read_record(dest)
    for source in sources:
        target = dest / source.path if source.path else dest
        if source.path == "" and target.exists() and any(p.name != "custom_nodes" for p in target.iterdir()):
            raise SystemExit(f"{target} is not empty: fetch into a fresh folder")
        if source.path and target.exists():
            raise SystemExit(f"{target} exists: fetch into a fresh folder")
        if mirror is not None:
            git_dir = find_in_mirror(mirror, source)
            if git_dir is None:
                raise SystemExit(f"{source.repo} @ {source.commit}: no snapshot under {mirror} has this commit")
            if source.path == "":  # ComfyUI into DEST, which may already hold custom_nodes/
                with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
                    from_mirror(git_dir, source, Path(tmp) / "src")
                    _merge(Path(tmp) / "src", dest)
            else:
                from_mirror(git_dir, source, target)
            origin = str(git_dir)
        else:
            if source.path == "":
                with tempfile.TemporaryDirectory() as tmp:
                    from_github(source, Path(tmp) / "src")
                    _merge(Path(tmp) / "src", dest)
            else:
                from_github(source, target)
            origin = TARBALL.format(repo=source.repo, commit=source.commit)
        record[source.repo] = {"commit": source.commit, "path": source.path, "from": origin}
        print(f"{source.repo} @ {source.commit} -> {target} (from {origin})", flush=True)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    everything = [s for s in plan(versions, flavour) if s.repo in record]
    (dest / REQUIREMENTS).write_text(requirements(dest, everything, python_packages(versions, flavour)))
    return sources


def _merge(src: Path, dest: Path) -> None:
    """Move src's content into dest; folders both have (ComfyUI's custom_nodes/) are merged, not nested."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir() and (dest / item.name).is_dir():
            _merge(item, dest / item.name)
        else:
            shutil.move(str(item), str(dest / item.name))


def _read_record(dest: Path) -> dict:
    path = dest / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def check(versions: dict, flavour: str, dest: Path, repos: frozenset[str] = frozenset()) -> None:
    """Prepared sources (SOURCES=local) must be exactly what versions.json names."""
    record = _read_record(dest)
    wrong = []
    for source in plan(versions, flavour, repos):
        got = record.get(source.repo, {})
        folder = dest / source.path
        if got.get("commit") != source.commit or not folder.is_dir() or (folder / ".git").exists():
            wrong.append(f"{source.repo}: want {source.commit} in {folder}, have {got.get('commit', 'nothing')}")
    if wrong:
        raise SystemExit("prepared sources do not match versions.json (run fetch_sources.py again):\n  "
                         + "\n  ".join(wrong))
    print(f"{dest}: {len(plan(versions, flavour, repos))} sources match versions.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--versions", type=Path, default=DEFAULT_VERSIONS)
    parser.add_argument("--flavour", default="all", help="native, wrapper or all (default): which node packs")
    parser.add_argument("--repos", default="", help="comma-separated owner/name: only these (offline test builds)")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--mirror", type=Path, default=os.environ.get("TALKGEN_SOURCES_MIRROR") or None,
                        help="bare git snapshots instead of GitHub (default: $TALKGEN_SOURCES_MIRROR)")
    parser.add_argument("--check", action="store_true", help="only check DEST against versions.json")
    parser.add_argument("--list", action="store_true", help="print 'repo commit path' for each source and exit")
    args = parser.parse_args(argv)
    versions = json.loads(args.versions.read_text())
    repos = frozenset(r.strip() for r in args.repos.split(",") if r.strip())
    if args.list:
        for s in plan(versions, args.flavour, repos):
            print(s.repo, s.commit, s.path or ".")
        return
    if args.check:
        check(versions, args.flavour, args.dest, repos)
        return
    fetch(versions, args.flavour, args.dest, args.mirror, repos)


if __name__ == "__main__":
    sys.exit(main())
