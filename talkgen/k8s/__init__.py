"""Kubernetes Jobs for batches: render Indexed Job manifests, validate them offline, submit, report status.

Modules: `options` (validated render options), `render` (typed `kubernetes` client models → YAML),
`checks` (strict schema + talkgen's semantic checks), `jobs` (submit/status/delete against a cluster),
`render_cli` (the ``talkgen k8s`` commands). Importing this package imports nothing heavy.
"""
