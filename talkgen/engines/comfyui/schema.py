"""Offline check of an API-format graph against a server's ``/object_info``: classes, required inputs,
combo values, and the types flowing through links."""

from __future__ import annotations

from typing import Any

FILE_COMBOS = {"image", "audio", "file", "video"}
"""Inputs that name uploaded files: the server lists only what it has, so their values are not checked."""
MODEL_SUFFIXES = (".safetensors", ".gguf", ".pt", ".pth", ".bin", ".ckpt", ".sft")


def _options(spec: list[Any]) -> list[Any] | None:
    if spec and isinstance(spec[0], list):
        return spec[0]
    if spec and spec[0] == "COMFY_DYNAMICCOMBO_V3":
        return [option.get("key") for option in spec[1].get("options", [])]
    if spec and spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def _type(spec: list[Any]) -> str | None:
    return spec[0] if spec and isinstance(spec[0], str) else None


def _dynamic_spec(specs: dict[str, Any], inputs: dict[str, Any], name: str) -> list[Any] | None:
    """The spec of a DynamicCombo sub-input such as ``mode.mask_1`` under the option the graph chose."""
    parent, _, child = name.partition(".")
    spec = specs.get(parent)
    if not spec or spec[0] != "COMFY_DYNAMICCOMBO_V3":
        return None
    for option in spec[1].get("options", []):
        if option.get("key") == inputs.get(parent):
            sub = option.get("inputs", {})
            specs = {**sub.get("required", {}), **sub.get("optional", {})}
            return specs.get(child) or ["<not an input of this option>"]
    return None


def check_graph(graph: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """Problems found (empty when the graph fits the schema)."""
    problems: list[str] = []
    for node_id, node in graph.items():
        cls = node.get("class_type")
        info = object_info.get(cls)
        if info is None:
            problems.append(f"#{node_id}: class {cls!r} does not exist")
            continue
        spec_inputs = {**info.get("input", {}).get("required", {}), **info.get("input", {}).get("optional", {})}
        required = info.get("input", {}).get("required", {})
        for name in required:
            if name not in node["inputs"]:
                problems.append(f"#{node_id} {cls}: required input {name!r} missing")
        for name, value in node["inputs"].items():
            spec = spec_inputs.get(name) if "." not in name else _dynamic_spec(spec_inputs, node["inputs"], name)
            if spec is None:
                continue  # hidden inputs (VHS format options) and inputs a node accepts dynamically
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                source = graph.get(value[0])
                if source is None:
                    problems.append(f"#{node_id} {cls}.{name}: link to missing node #{value[0]}")
                    continue
                outputs = object_info.get(source["class_type"], {}).get("output", [])
                if value[1] >= len(outputs):
                    problems.append(f"#{node_id} {cls}.{name}: #{value[0]} has no output {value[1]}")
                    continue
                want, got = _type(spec), outputs[value[1]]
                if want and want not in ("*", "COMBO") and got != "*" and not set(str(got).split(",")) & set(
                        want.split(",")):
                    problems.append(f"#{node_id} {cls}.{name}: expects {want}, linked to {got} of #{value[0]}")
                continue
            options = _options(spec)
            if options is None or name in FILE_COMBOS:
                continue
            if isinstance(value, str) and value.endswith(MODEL_SUFFIXES):
                continue  # model names depend on the server's files
            if options and value not in options:
                problems.append(f"#{node_id} {cls}.{name}: {value!r} not in {options[:8]}")
    return problems
