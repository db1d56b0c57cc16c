"""The InfiniteTalk network: the DiT with audio cross-attention, speaker routing, context parallelism,
fp8 layers, and the wav2vec2 features it listens to."""
