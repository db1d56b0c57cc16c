"""Keep transformers/diffusers from printing progress bars and info chatter into a server's log."""

from __future__ import annotations


def quiet_hub_logging() -> None:
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
