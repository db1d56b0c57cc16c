"""``talkgen k8s render | render-download | validate | submit | status | delete``: click commands.

The lead's ``talkgen k8s`` group adds these objects; each reports errors like the rest of the CLI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

_POD_FLAGS = [
    click.option("--image", help="The talkgen image the pods run (e.g. registry.example.com/talkgen-native:0.1.0)."),
    click.option("--name", help="Job name (DNS-1123, ≤63); default derived from the inputs."),
    click.option("--namespace", help="Namespace written into the manifest (default: none, kubectl's)."),
    click.option("--models-pvc", help="PersistentVolumeClaim holding the weights, mounted at /models."),
    click.option("--env-secret", "env_secrets", multiple=True, metavar="NAME",
                 help="Secret whose keys become env vars (storage credentials, HF_TOKEN). Repeatable."),
    click.option("--env", multiple=True, metavar="K=V", help="An env var for the container (TALKGEN_*). Repeatable."),
    click.option("--service-account", help="Pod service account (e.g. one bound to a cloud storage role)."),
    click.option("--cpu", help="CPU request (e.g. 8)."),
    click.option("--memory", help="Memory request and limit (e.g. 64Gi)."),
    click.option("--node-selector", multiple=True, metavar="LABEL=VALUE", help="A node label to require. Repeatable."),
    click.option("--toleration", "tolerations", multiple=True, metavar="KEY[=VALUE][:EFFECT]",
                 help="A taint to tolerate (GPU jobs tolerate nvidia.com/gpu by default). Repeatable."),
    click.option("--ttl-s", type=int, help="Delete the Job this many seconds after it finished [604800]."),
    click.option("--deadline-s", type=int, help="activeDeadlineSeconds of the whole Job; 0: none [86400]."),
    click.option("--image-pull-policy", type=click.Choice(["Always", "IfNotPresent", "Never"])),
]
_BATCH_FLAGS = [
    click.option("--requests", help="JSONL of requests the pods can read (s3://bucket/batch.jsonl)."),
    click.option("--output", help="Prefix for each request's video and status JSON (s3://bucket/out/)."),
    click.option("--gpus", type=int, help="nvidia.com/gpu per pod; 0 for a CPU run [1]."),
    click.option("--parallelism", type=int, help="Pods running at once [1]."),
    click.option("--shards", type=int, help="Indexes the requests are split into [= parallelism]."),
    click.option("--backoff-per-index", type=int, help="Retries of one index (backoffLimitPerIndex) [2]."),
    click.option("--max-failed-indexes", type=int, help="Fail the whole Job once this many indexes failed."),
    click.option("--gpu-product", help="Require nodes with this nvidia.com/gpu.product label."),
    click.option("--work-dir-size", help="Size limit of the emptyDir work dir [50Gi]."),
    click.option("--grace-period-s", type=int, help="terminationGracePeriodSeconds: time to checkpoint [120]."),
]
_CLUSTER_FLAGS = [
    click.option("--context", help="kubeconfig context (default: the current one)."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def _flags(*groups: list[Callable[..., Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for group in reversed(groups):
            for option in reversed(group):
                func = option(func)
        return func
    return apply


def _render_options(flags: dict[str, Any]) -> Any:
    from talkgen.k8s.options import RenderOptions

    return RenderOptions.parse(**flags)


def _emit(text: str, out_file: str | None) -> None:
    if out_file and out_file != "-":
        with open(out_file, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {out_file}", err=True)
    else:
        click.echo(text, nl=False)


@click.command()
@_flags(_BATCH_FLAGS, _POD_FLAGS)
@click.option("-o", "out_file", metavar="FILE", help="Write the YAML here instead of stdout.")
def render(out_file: str | None, **flags: Any) -> None:
    """Print the Indexed Job that runs a JSONL of requests over GPUs (validated; kubectl apply -f it)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(False):
        from talkgen.k8s.render import render_job, to_yaml

        text = to_yaml(render_job(_render_options(flags)))
        _emit(text, out_file)


@click.command(name="render-download")
@_flags(_POD_FLAGS)
@click.option("--model-set", help="Model set to download (`talkgen models list`) [infinitetalk-480p].")
@click.option("--skip", multiple=True, metavar="GROUP", help="Leave out a group of files. Repeatable.")
@click.option("--skip-optional", is_flag=True, default=None, help="Skip optional files.")
@click.option("--backoff-limit", type=int, help="Retries of the download pod [4].")
@click.option("-o", "out_file", metavar="FILE", help="Write the YAML here instead of stdout.")
def render_download(out_file: str | None, **flags: Any) -> None:
    """Print a one-off Job that fills the weights PVC (download, then verify every file)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(False):
        from talkgen.k8s.options import DownloadOptions
        from talkgen.k8s.render import render_download_job, to_yaml

        flags["skip"] = flags["skip"] or None
        _emit(to_yaml(render_download_job(DownloadOptions.parse(**flags))), out_file)


def load_manifests(path: str) -> list[Any]:
    """The documents of a YAML file (``-``: stdin), empty ones left out; `InvalidRequest` if it is not YAML."""
    import yaml

    from talkgen.errors import InvalidRequest, shown

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except OSError as exc:
        raise InvalidRequest(f"Cannot read {shown(path)}: {exc.strerror or exc}.", field="file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{shown(path)} is not YAML: {str(exc)[:300]}.", field="file") from None


def check_manifests(docs: list[Any]) -> list[str]:
    """``kind/name`` of each document; one `InvalidRequest` listing every problem of every document."""
    from talkgen.errors import InvalidRequest
    from talkgen.k8s.checks import describe, manifest_problems, raise_problems

    if not docs:
        raise InvalidRequest("The file holds no manifest.", field="file")
    problems = []
    for i, doc in enumerate(docs):
        prefix = f"document {i + 1} ({describe(doc)}) " if len(docs) > 1 else ""
        problems += [(f"{prefix}{where}", message) for where, message in manifest_problems(doc)]
    raise_problems(problems, describe(docs[0]) if len(docs) == 1 else f"file ({len(docs)} documents)")
    return [describe(doc) for doc in docs]


@click.command()
@click.argument("manifest_file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(manifest_file: str, as_json: bool) -> None:
    """Check a YAML file offline: strict Kubernetes 1.37 schema + talkgen's semantic checks (every document)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(as_json):
        names = check_manifests(load_manifests(manifest_file))
    if as_json:
        click.echo(json.dumps({"valid": True, "resources": names}))
    else:
        click.echo(f"{manifest_file}: valid ({', '.join(names)})")


@click.command()
@_flags(_BATCH_FLAGS, _POD_FLAGS, _CLUSTER_FLAGS)
@click.option("-f", "--filename", help="Submit the Job(s) in this YAML file instead of rendering one.")
def submit(filename: str | None, context: str | None, as_json: bool, **flags: Any) -> None:
    """Create the batch Job in the cluster of the current kubeconfig (rendered from the flags, or -f FILE)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(as_json):
        from talkgen.errors import InvalidRequest
        from talkgen.k8s import jobs
        from talkgen.k8s.render import render_job

        if filename:
            given = sorted(k for k, v in flags.items() if v not in (None, ()) and k != "namespace")
            if given:
                raise InvalidRequest(f"-f submits a file as it is: leave out --{given[0].replace('_', '-')} (or "
                                     "render with the flags instead of -f).", field=given[0])
            bodies = check_manifests_for_submit(load_manifests(filename))
        else:
            bodies = [render_job(_render_options(flags))]
        api = jobs.load_api_client(context)
        namespace = flags.get("namespace")
        try:
            created = [jobs.submit(body, namespace or _declared(body) or jobs.default_namespace(context), api)
                       for body in bodies]
        finally:
            api.close()
    rows = [{"name": j.metadata.name, "namespace": j.metadata.namespace, "uid": j.metadata.uid} for j in created]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"job.batch/{row['name']} created in namespace {row['namespace']} (uid {row['uid']})")
        click.echo(f"  follow it: talkgen k8s status {row['name']} --namespace {row['namespace']}")


def _declared(body: Any) -> str | None:
    return ((body.get("metadata") or {}).get("namespace")) if isinstance(body, dict) else body.metadata.namespace


def check_manifests_for_submit(docs: list[Any]) -> list[dict[str, Any]]:
    """The Jobs of a file, all checked before any is created."""
    from talkgen.errors import InvalidRequest

    check_manifests(docs)
    kinds = [f"document {i + 1} is a {doc.get('kind')}" for i, doc in enumerate(docs) if doc.get("kind") != "Job"]
    if kinds:
        raise InvalidRequest(f"Only Jobs can be submitted: {'; '.join(kinds)} (kubectl apply it).", field="file")
    return docs


def _status_lines(state: Any) -> list[str]:
    from talkgen.k8s.jobs import format_indexes

    lines = [f"job {state.name} in {state.namespace}: {state.outcome}" + ("" if state.uid is None else
                                                                           f" (uid {state.uid})"),
             f"indexes: {state.shards} shards; completed {format_indexes(state.completed_indexes) or '-'}; "
             f"failed {format_indexes(state.failed_indexes) or '-'}",
             f"pods: {state.active} active ({state.ready} ready), {state.succeeded} succeeded, {state.failed} failed"]
    for cond in state.conditions:
        if cond["status"] == "True":
            lines.append(f"condition {cond['type']}: {cond['reason'] or ''} {cond['message'] or ''}".rstrip())
    if state.items_error:
        lines.append(f"requests: not read ({state.items_error})")
    elif state.items is not None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(state.counts().items()))
        lines.append(f"requests: {len(state.items)} ({counts or 'none'})")
        for item in state.items:
            detail = item.error or ""
            if item.status == "succeeded":
                detail = str((item.record or {}).get("response", {}).get("video_url") or "")
            lines.append(f"  line {item.line:>6} {item.key} [index {item.index}] {item.status}"
                         + (f": {detail}" if detail else ""))
    return lines


@click.command()
@click.argument("name")
@click.option("--namespace", help="Namespace of the Job (default: the kubeconfig context's).")
@click.option("--no-records", is_flag=True, help="Only the Job's state; do not read the status JSONs.")
@_flags(_CLUSTER_FLAGS)
def status(name: str, namespace: str | None, no_records: bool, context: str | None, as_json: bool) -> None:
    """A batch Job's completed/failed indexes and each request's status (from its status JSON)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(as_json):
        from talkgen.k8s import jobs

        api = jobs.load_api_client(context)
        try:
            state = jobs.batch_status(name, namespace or jobs.default_namespace(context), api, records=not no_records)
        finally:
            api.close()
    if as_json:
        click.echo(json.dumps(state.to_dict(), default=str))
    else:
        for line in _status_lines(state):
            click.echo(line)


@click.command()
@click.argument("name")
@click.option("--namespace", help="Namespace of the Job (default: the kubeconfig context's).")
@_flags(_CLUSTER_FLAGS)
def delete(name: str, namespace: str | None, context: str | None, as_json: bool) -> None:
    """Delete a batch Job and its pods (outputs and status JSONs stay)."""
    from talkgen.cli_support import reported_errors

    with reported_errors(as_json):
        from talkgen.k8s import jobs

        api = jobs.load_api_client(context)
        namespace = namespace or jobs.default_namespace(context)
        try:
            jobs.delete(name, namespace, api)
        finally:
            api.close()
    click.echo(json.dumps({"name": name, "namespace": namespace, "deleted": True}) if as_json
               else f"job.batch/{name} deleted from {namespace}")
