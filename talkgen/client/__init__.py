"""One client over the platforms talkgen deploys to: RunPod, Modal, Kubernetes.

    from talkgen.client import connect

    with connect("runpod:abc123") as client:          # or "modal:https://…modal.run", "k8s:default", …
        response = client.run({"image_url": "https://…/face.png", "wav_url": "https://…/speech.wav"})
        client.save(response, "out.mp4")

Jobs report RunPod's status words (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT) and the
same talkgen response or error, whatever the platform.
"""

from talkgen.client.base import Platform
from talkgen.client.client import Client, connect
from talkgen.client.status import JobStatus
from talkgen.client.target import TARGET_ENV, parse_target

__all__ = ["TARGET_ENV", "Client", "JobStatus", "Platform", "connect", "parse_target"]
