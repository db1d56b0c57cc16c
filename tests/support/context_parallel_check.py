"""Run under ``torchrun --nproc_per_node=2``: the tiny DiT split over two CPU ranks vs one process.

Writes ``<out dir>/rank-N.json`` per rank (stdout lines of two ranks interleave) with the max abs
difference for one and two speakers. The grid (3 latent
frames of 4x4 tokens, 48 tokens) puts the split between ranks inside a frame.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from talkgen.engines.native.model.parallel import enable_context_parallel
from talkgen.engines.native.model.speakers import speaker_masks
from talkgen.engines.native.model.transformer import InfiniteTalkTransformer3DModel
from talkgen.engines.native.weights.tiny import AUDIO, DIT
from talkgen.media.boxes import default_boxes


def main() -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = InfiniteTalkTransformer3DModel(**DIT, **AUDIO).eval()
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(1, 36, 3, 8, 8, generator=g), torch.tensor([500.0]), torch.randn(1, 512, 32, generator=g),
            torch.randn(1, 257, 32, generator=g))
    one = {"audio": torch.randn(1, 9, 5, 2, 32, generator=g)}
    two = {"audio": torch.randn(2, 9, 5, 2, 32, generator=g),
           "speaker_masks": speaker_masks(default_boxes(64, 64), 64, 64, 64, 64)}
    with torch.no_grad():
        expected = [model(*args, **kw, return_dict=False)[0] for kw in (one, two)]
        enable_context_parallel(model, torch.device("cpu"), dist.get_world_size())
        got = [model(*args, **kw, return_dict=False)[0] for kw in (one, two)]
    diffs = [(a - b).abs().max().item() for a, b in zip(got, expected, strict=True)]
    result = {"rank": dist.get_rank(), "diffs": diffs, "scale": expected[1].abs().max().item()}
    Path(sys.argv[1], f"rank-{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.barrier()
    # Skip interpreter teardown: gloo's background threads can abort it on a loaded machine ("terminate called
    # without an active exception") after the results are out.
    os._exit(0)


if __name__ == "__main__":
    main()
