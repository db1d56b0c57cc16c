"""Integrated loudness (ITU-R BS.1770, as pyloudnorm measures it), fed block by block.

pyloudnorm's meter needs the whole signal at once and copies it several times (float64, per-block
slices in a Python loop), so an hour of audio costs GBs and minutes. This meter keeps only the filter
state and one energy per 100 ms hop (36,000 floats for an hour): memory does not grow with the audio,
and the result matches pyloudnorm's to within float rounding.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_S = 0.4
"""Gating block length (BS.1770)."""
HOPS_PER_BLOCK = 4
"""Blocks overlap by 75 %: a block is four consecutive hops."""
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0


def _k_weighting(rate: int) -> np.ndarray:
    """The K-weighting pre-filter (high shelf, then high pass) as second-order sections, pyloudnorm's."""
    import pyloudnorm  # imported when first used: scipy is heavy for `talkgen --help`

    stages = (
        pyloudnorm.IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, rate, "high_shelf"),
        pyloudnorm.IIRfilter(0.0, 0.5, 38.0, rate, "high_pass"),
    )
    return np.array([[*(s.b / s.a[0]), *(s.a / s.a[0])] for s in stages], dtype=np.float64)


class LoudnessMeter:
    """``add`` mono float blocks of any size in order, then read `integrated` (LUFS; -inf for silence)."""

    def __init__(self, rate: int) -> None:
        from scipy import signal

        self._sosfilt = signal.sosfilt
        self.rate = rate
        self.samples = 0
        self._sos = _k_weighting(rate)
        self._state = np.zeros((self._sos.shape[0], 2))
        self._hop = round(BLOCK_S * rate / HOPS_PER_BLOCK)
        self._hops: list[float] = []  # sum of squared weighted samples per finished hop
        self._partial = 0.0  # the same for the hop in progress
        self._in_hop = 0

    def add(self, samples: np.ndarray) -> None:
        """Filter ``samples`` (continuing the previous block) and add their energy to the hops."""
        if not len(samples):
            return
        weighted, self._state = self._sosfilt(self._sos, samples, zi=self._state)
        energy = np.square(weighted)
        self.samples += len(samples)
        start = 0
        if self._in_hop:
            take = min(self._hop - self._in_hop, len(energy))
            self._partial += float(energy[:take].sum())
            self._in_hop += take
            start = take
            if self._in_hop == self._hop:
                self._hops.append(self._partial)
                self._partial, self._in_hop = 0.0, 0
        whole = (len(energy) - start) // self._hop
        if whole:
            end = start + whole * self._hop
            self._hops.extend(energy[start:end].reshape(whole, self._hop).sum(axis=1).tolist())
            start = end
        if start < len(energy):
            self._partial += float(energy[start:].sum())
            self._in_hop += len(energy) - start

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (BS.1770-4); -inf when no block passes the gates.

        The number of blocks is pyloudnorm's (the last ones may reach past the end, counting silence
        there), so both agree on short and long signals alike.
        """
        if self.samples < BLOCK_S * self.rate:
            return -math.inf
        hops = np.array(self._hops + ([self._partial] if self._in_hop else []), dtype=np.float64)
        blocks = int(np.round(self.samples / self._hop - HOPS_PER_BLOCK)) + 1
        padded = np.zeros(blocks + HOPS_PER_BLOCK - 1)
        padded[: min(len(hops), len(padded))] = hops[: len(padded)]
        window = np.lib.stride_tricks.sliding_window_view(padded, HOPS_PER_BLOCK)[:blocks]
        power = window.sum(axis=1) / (BLOCK_S * self.rate)
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10.0 * np.log10(power)
        gated = power[loudness >= ABSOLUTE_GATE_LUFS]
        if not len(gated):
            return -math.inf
        relative = -0.691 + 10.0 * math.log10(gated.mean()) + RELATIVE_GATE_LU
        kept = power[(loudness > relative) & (loudness > ABSOLUTE_GATE_LUFS)]
        if not len(kept) or kept.mean() <= 0:
            return -math.inf
        return -0.691 + 10.0 * math.log10(kept.mean())
