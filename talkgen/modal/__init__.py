"""talkgen on Modal: settings, the GPU worker, the web job API and batches (`deploy/modal_app.py` uses them).

Nothing here imports ``modal`` at import time; `talkgen.modal.calls` and the app file do.
"""
