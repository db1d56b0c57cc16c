"""Any length through a fixed-size model in constant memory: overlapping chunks, cross-faded.

The input streams in as ``(channels, n)`` float32 blocks and the output streams out the same way, so memory
holds a chunk or two whatever the length. The scheme is the seed node's (ComfyUI-MelBandRoFormer): the
signal is reflect-padded by ``chunk - step`` at both ends (so its edges sit mid-chunk, with context), chunks
start every ``step`` samples, each result is weighted by a window that fades in and out over ``fade``
samples (flat at the outer edges of the first and last chunks) and the weighted sum is divided by the summed
weights. A final chunk shorter than ``chunk`` is padded to it (reflected when over half a chunk long, zeros
otherwise) and its result cut back. Audio of at most ``2 * (chunk - step)`` samples is not padded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

Model = Callable[[np.ndarray], np.ndarray]
"""``(channels, chunk)`` float32 in, the separated stem of the same shape out."""


def window(chunk: int, fade: int, first: bool, last: bool) -> np.ndarray:
    """Cross-fade weights of one chunk: linear ramps of ``fade`` samples, none at the signal's outer edges."""
    w = np.ones(chunk, np.float32)
    if not first:
        w[:fade] = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    if not last:
        w[chunk - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return w


def fit_chunk(part: np.ndarray, chunk: int) -> np.ndarray:
    """``part`` padded to ``chunk`` samples: reflected when over half a chunk long, else zeros."""
    length = part.shape[-1]
    if length >= chunk:
        return part
    mode = "reflect" if length > chunk // 2 + 1 else "constant"
    return np.pad(part, ((0, 0), (0, chunk - length)), mode=mode)


class _Reader:
    """Pulls blocks from an iterator into a growing buffer on demand."""

    def __init__(self, blocks: Iterable[np.ndarray], channels: int) -> None:
        self._it = iter(blocks)
        self.buf = np.zeros((channels, 0), np.float32)
        self.ended = False

    def fill(self, size: int) -> None:
        parts = [self.buf]
        have = self.buf.shape[1]
        while have < size and not self.ended:
            block = next(self._it, None)
            if block is None:
                self.ended = True
                break
            block = np.asarray(block, np.float32)
            parts.append(block)
            have += block.shape[1]
        if len(parts) > 1:
            self.buf = np.concatenate(parts, axis=1)

    def take(self, count: int) -> np.ndarray:
        out, self.buf = self.buf[:, :count], self.buf[:, count:]
        return out


def _padded(reader: _Reader, border: int) -> tuple[Iterator[np.ndarray], bool]:
    """The stream reflect-padded by ``border`` at both ends, and whether it was padded (long enough)."""
    reader.fill(2 * border + 1)
    if reader.ended and reader.buf.shape[1] <= 2 * border:
        return iter([reader.take(reader.buf.shape[1])]), False

    def gen() -> Iterator[np.ndarray]:
        yield reader.buf[:, border:0:-1].copy()
        keep = border + 1  # the tail's reflection needs the last border + 1 samples
        while True:
            reader.fill(2 * keep)  # pass on at least ``keep`` samples a turn: each sample is copied O(1) times
            if reader.ended:
                break
            yield reader.take(reader.buf.shape[1] - keep)
        rest = reader.take(reader.buf.shape[1])
        yield rest
        yield rest[:, -2:-border - 2:-1].copy()

    return gen(), True


def _trimmed(blocks: Iterable[np.ndarray], head: int, tail: int) -> Iterator[np.ndarray]:
    """The stream without its first ``head`` and last ``tail`` samples (holds ``tail`` samples back)."""
    held: np.ndarray | None = None
    for block in blocks:
        if head:
            cut = min(head, block.shape[1])
            block, head = block[:, cut:], head - cut
        held = block if held is None else np.concatenate([held, block], axis=1)
        if held.shape[1] > tail:
            yield held[:, :held.shape[1] - tail]
            held = held[:, held.shape[1] - tail:]


def separate_stream(model: Model, blocks: Iterable[np.ndarray], *, channels: int, chunk: int, step: int,
                    fade: int, on_chunk: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    """Run ``model`` over a stream of ``(channels, n)`` blocks chunk by chunk; yields the stem's blocks.

    The output has exactly as many samples as the input. ``on_chunk`` is called before each chunk (progress,
    cancellation).
    """
    if not 0 < step < chunk or not 0 < fade <= min(step, chunk - step):
        raise ValueError(f"chunk {chunk}, step {step}, fade {fade}: need 0 < fade <= step < chunk and chunks that "
                         "overlap by at least the fade")
    border = chunk - step
    reader = _Reader(blocks, channels)
    padded, was_padded = _padded(reader, border)
    trim = border if was_padded else 0
    return _trimmed(_overlap_add(model, padded, channels, chunk, step, fade, on_chunk), trim, trim)


def _overlap_add(model: Model, blocks: Iterator[np.ndarray], channels: int, chunk: int, step: int, fade: int,
                 on_chunk: Callable[[], None] | None) -> Iterator[np.ndarray]:
    reader = _Reader(blocks, channels)
    acc = np.zeros((channels, chunk), np.float32)
    weight = np.zeros(chunk, np.float32)
    first = True
    while True:
        reader.fill(chunk + 1)  # one sample past the chunk says whether the signal ends inside it
        have = reader.buf.shape[1]
        if have == 0:
            return
        if on_chunk is not None:
            on_chunk()
        length = min(chunk, have)
        last = reader.ended and have <= chunk
        out = np.asarray(model(fit_chunk(reader.buf[:, :length], chunk)), np.float32)
        w = window(chunk, fade, first, last)[:length]
        acc[:, :length] += out[:, :length] * w
        weight[:length] += w
        first = False
        if reader.ended and have <= step:  # no chunk starts after this one
            yield acc[:, :have] / weight[:have]
            return
        yield acc[:, :step] / weight[:step]
        acc = np.concatenate([acc[:, step:], np.zeros((channels, step), np.float32)], axis=1)
        weight = np.concatenate([weight[step:], np.zeros(step, np.float32)])
        reader.take(step)
