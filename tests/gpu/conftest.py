"""The GPU suite (`make gpu-check`, marker ``gpu``): the native engine on CUDA, as users run it.

Without a CUDA GPU every test here is skipped with the reason. ``TALKGEN_GPU_SUITE_ON_CPU=1`` runs the
same tests on the CPU (a rehearsal that checks the suite itself; CUDA-only checks still skip).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tests.native import conftest as native

tiny_models = native.tiny_models  # the session fixtures the native tests use
tiny_fp8_models = native.tiny_fp8_models
native_media = native.native_media

REHEARSAL = "TALKGEN_GPU_SUITE_ON_CPU"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def gpu():  # type: ignore[no-untyped-def]
    """The CUDA device (or the CPU in a rehearsal); skips the test when there is neither."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(REHEARSAL):
        return torch.device("cpu")
    pytest.skip("no CUDA GPU here: run `make gpu-check` on a GPU machine (TALKGEN_GPU_SUITE_ON_CPU=1 rehearses it)")


@pytest.fixture
def cuda_only(gpu):  # type: ignore[no-untyped-def]
    if gpu.type != "cuda":
        pytest.skip("needs a real CUDA device (not part of the CPU rehearsal)")
    return gpu


@pytest.fixture(scope="session")
def gpu_settings(gpu, tiny_models: Path, native_media: Path, tmp_path_factory: pytest.TempPathFactory):
    from talkgen.settings import Settings

    return Settings(engine="native", models_dir=tiny_models, allowed_path_roots=[native_media],
                    work_dir=tmp_path_factory.mktemp("gpu-work"), url_retries=0, native_device=str(gpu))


@pytest.fixture(scope="session")
def gpu_service(gpu_settings):
    from talkgen.service import TalkGen

    service = TalkGen(gpu_settings)
    yield service
    service.close()
