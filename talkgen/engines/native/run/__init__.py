"""One job: the engine, the window loop, sampling, colour matching, checkpoints, the output worker."""
