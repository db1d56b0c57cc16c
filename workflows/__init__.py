"""The built-in ComfyUI graphs, shipped in the wheel as ``talkgen.workflows``.

This folder is the one copy: ``pyproject.toml`` maps the package ``talkgen.workflows`` to it
(``[tool.setuptools] package-dir``), so operators find the graphs at the repository's top level and the
engine reads them through ``importlib.resources`` from an editable install and from a built wheel alike.

- ``<flavour>/<mode>.json``: API-format workflows (``native`` or ``wrapper``; ``I2V_single``, ``I2V_multi``,
  ``V2V_single``, ``V2V_multi``) whose input nodes are titled ``talkgen:<slot>``.
- ``versions.json``: the ComfyUI and node-pack commits, Python packages and model files each flavour's graphs
  were checked against; ``deploy/comfyui/fetch_sources.py`` reads it to build the ComfyUI image.
"""
