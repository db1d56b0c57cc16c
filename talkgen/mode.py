"""The four job modes and the media roles each one needs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class MediaRole:
    """One media slot of a request (the portrait, the source video, a speaker's audio)."""

    name: str
    kind: str  # "image" | "video" | "audio": what the bytes must be
    path_field: str
    url_field: str
    base64_field: str
    label: str  # how messages name it

    @property
    def fields(self) -> tuple[str, str, str]:
        return (self.path_field, self.url_field, self.base64_field)

    def describe_fields(self) -> str:
        return f"`{self.path_field}`, `{self.url_field}` or `{self.base64_field}`"


IMAGE = MediaRole("image", "image", "image_path", "image_url", "image_base64", "the portrait image")
VIDEO = MediaRole("video", "video", "video_path", "video_url", "video_base64", "the source video")
AUDIO_1 = MediaRole("audio_1", "audio", "wav_path", "wav_url", "wav_base64", "speaker 1's audio")
AUDIO_2 = MediaRole("audio_2", "audio", "wav_path_2", "wav_url_2", "wav_base64_2", "speaker 2's audio")
ALL_ROLES: tuple[MediaRole, ...] = (IMAGE, VIDEO, AUDIO_1, AUDIO_2)
MEDIA_FIELDS: frozenset[str] = frozenset(f for role in ALL_ROLES for f in role.fields)


class Mode(str, Enum):
    """(input_type, person_count) resolved once, in the core."""

    I2V_SINGLE = "I2V_single"
    I2V_MULTI = "I2V_multi"
    V2V_SINGLE = "V2V_single"
    V2V_MULTI = "V2V_multi"

    @classmethod
    def resolve(cls, input_type: str, person_count: str) -> Mode:
        prefix = "I2V" if input_type == "image" else "V2V"
        return cls(f"{prefix}_{person_count}")

    @property
    def is_video(self) -> bool:
        return self.value.startswith("V2V")

    @property
    def speakers(self) -> int:
        return 2 if self.value.endswith("multi") else 1

    @property
    def workflow(self) -> str:
        """Name of the seed template's workflow file for this mode (without `.json`)."""
        return self.value

    @property
    def visual_role(self) -> MediaRole:
        return VIDEO if self.is_video else IMAGE

    @property
    def audio_roles(self) -> tuple[MediaRole, ...]:
        return (AUDIO_1, AUDIO_2) if self.speakers == 2 else (AUDIO_1,)

    @property
    def roles(self) -> tuple[MediaRole, ...]:
        """Every media role this mode requires, visual first."""
        return (self.visual_role, *self.audio_roles)
