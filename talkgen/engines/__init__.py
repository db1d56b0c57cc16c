"""Engines turn a prepared `Job` into video frames. See `talkgen.engines.base.Engine`."""
