"""Model files: where they live, downloads, reading and key names, fp8 scales, LoRA merging, and the tiny
and real-size random weights."""
