"""RunPod Hub entry point: starts talkgen's RunPod worker (``talkgen.runtimes.runpod``); no handler of its own.

The image's entrypoint (deploy/entrypoint.sh) runs ``talkgen doctor`` and then the same worker, so
``python .runpod/handler.py --test_input '{"input": {...}}'`` and the image behave alike.
"""

from talkgen.runtimes.runpod import handler, main

__all__ = ["handler", "main"]

if __name__ == "__main__":
    main()
