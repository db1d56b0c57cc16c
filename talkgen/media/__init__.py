"""Media: sniffing, probing, audio preparation, streaming video reading and writing (PyAV, Pillow)."""

from talkgen.media.kinds import Media, sniff

__all__ = ["Media", "sniff"]
