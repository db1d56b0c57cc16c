"""Runtimes adapt a platform's invocation (RunPod, Modal, Kubernetes, CLI) to `TalkGen.generate`."""
