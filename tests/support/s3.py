"""An in-process moto S3 server on loopback, and the fsspec options that reach it.

    with MotoS3() as s3:
        s3.filesystem().mkdir("talkgen-test")
        settings = Settings(storage_options={"s3": s3.storage_options})
"""

from __future__ import annotations

from typing import Any

import httpx

REGION = "eu-west-1"  # not us-east-1: s3fs mkdir sends a LocationConstraint that region rejects


class MotoS3:
    """`moto.server.ThreadedMotoServer` on 127.0.0.1 with a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def storage_options(self) -> dict[str, Any]:
        """s3fs options: fixed test keys, this endpoint, and no cached filesystem instances."""
        return {
            "key": "testing",
            "secret": "testing",
            "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
        }

    def filesystem(self) -> Any:
        """An `s3fs.S3FileSystem` for setting up buckets and objects."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)

    def reset(self) -> None:
        """Forget every bucket and object."""
        httpx.post(f"{self.endpoint}/moto-api/reset", trust_env=False).raise_for_status()

    def enforce_auth(self, enabled: bool = True) -> None:
        """Make moto check credentials (the test keys are then refused), or stop checking."""
        count = b"0" if enabled else b"inf"
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=count, trust_env=False).raise_for_status()
