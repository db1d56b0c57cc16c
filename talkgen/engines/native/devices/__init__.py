"""Models on devices: which model lives where (memory plans, offload, visits), options from settings, CUDA errors."""
