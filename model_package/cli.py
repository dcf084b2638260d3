"""``model-package``: the command line for creating, checking and publishing packages.

Every expected failure is one line on stderr and a non-zero exit code (see
``errors.py`` for the codes); results go to stdout (``--json`` for machines),
logs and progress to stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_package._version import __version__
from model_package.errors import MissingFileError, ModelPackageError, UsageError
from model_package.logs import configure_logging
from model_package.manifest import MODEL_FORMATS, Manifest, parse_manifest, read_manifest
from model_package.progress import progress

_log = logging.getLogger("model_package.cli")
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``model-package`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    try:
        result: dict[str, Any] = args.handler(args)
    except ModelPackageError as exc:
        print(f"model-package: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("model-package: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not an expected failure: keep the traceback reachable
        if args.verbose:
            raise
        print(
            f"model-package: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    _emit(result, as_json=args.json)
    return 0


def _emit(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    for key, value in result.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        print(f"{key}: {text}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-package",
        description="Export, package, verify and publish PyTorch and TensorFlow models.",
    )
    parser.add_argument("--version", action="version", version=f"model-package {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--log-format", choices=["auto", "json", "text"], default="auto", help="stderr log format")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = add("export", "export a live model returned by a factory function into a package directory")
    p.add_argument("factory", help="'package.module:function' or 'file.py:function' returning (model, example_inputs)")
    _add_package_options(p)
    p.add_argument("--format", choices=MODEL_FORMATS, help="default: torch_export (PyTorch), tf_savedmodel (Keras)")
    _add_dynamic_axes_option(p)
    p.set_defaults(handler=_cmd_export)

    p = add("import", "package an already-saved artifact (.pt2, TorchScript, SavedModel dir, .keras, .onnx)")
    p.add_argument("artifact", type=Path)
    _add_package_options(p)
    p.add_argument("--format", choices=MODEL_FORMATS, help="default: detected from the artifact")
    p.add_argument("--example-inputs", type=Path, help=".npz of named example inputs (required for TorchScript)")
    p.add_argument("--expected-outputs", type=Path, help=".npz of the outputs the example must produce")
    _add_dynamic_axes_option(p)
    p.add_argument("--signature", help="SavedModel signature to serve (default: serving_default)")
    p.set_defaults(handler=_cmd_import)

    p = add("pack", "write the deterministic model.tar.gz of a package directory and print its digest")
    p.add_argument("package_dir", type=Path)
    p.add_argument("-o", "--out", type=Path, help="archive path (default: <package_dir>.tar.gz)")
    p.add_argument("--threads", type=int, help="compression threads (default: all cores)")
    p.set_defaults(handler=_cmd_pack)

    p = add("verify", "check a package directory or archive: integrity, then behaviour on its example")
    p.add_argument("path", type=Path, help="package directory or model.tar.gz")
    p.add_argument("--digest", help="expected sha256 of the archive")
    p.add_argument("--integrity-only", action="store_true", help="skip loading the model")
    p.set_defaults(handler=_cmd_verify)

    p = add("inspect", "show a package's manifest (directory, archive or manifest.json)")
    p.add_argument("path", type=Path)
    p.set_defaults(handler=_cmd_inspect)

    p = add("push", "publish a package to s3://, gs:// or file:// under <name>/<digest>/ (idempotent)")
    p.add_argument("path", type=Path, help="package directory or model.tar.gz")
    p.add_argument("store", help="store URI, e.g. s3://bucket/models")
    p.add_argument("--layout", choices=["archive", "uncompressed"], default="archive")
    p.add_argument(
        "--kms-key-id",
        help="S3: SSE-KMS key ARN, id or alias (sent as its key ARN); GCS: CMEK key name "
        "(default: the bucket's default encryption, which is the store's own key for stores the stacks create)",
    )
    p.set_defaults(handler=_cmd_push)

    p = add("pull", "download a published package, verify its digest and files, unpack it")
    p.add_argument("uri", help=".../<name>/<digest>/model.tar.gz or .../<name>/<digest>/")
    p.add_argument("dest", type=Path, help="directory to create")
    p.set_defaults(handler=_cmd_pull)
    return parser


def _add_dynamic_axes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dynamic-axes",
        action="append",
        default=[],
        metavar="NAME=AXES",
        help="input axes besides the batch whose size may vary, e.g. candidates=1 (repeatable; NAME= keeps NAME "
        "fixed). input_ids, attention_mask, token_type_ids, position_ids get axis 1 unless declared",
    )


def _add_package_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="package name (lowercase letters, digits, . _ -)")
    p.add_argument("--version", dest="package_version", required=True, help="package version, e.g. 1.2.0")
    p.add_argument("-o", "--out", type=Path, required=True, help="package directory to create")
    p.add_argument("--code", type=Path, help="directory with inference.py (+ requirements.txt) to ship as code/")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance when verifying outputs")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance when verifying outputs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package directory")
    p.add_argument("--no-verify", action="store_true", help="skip loading the package back to verify it")
    _add_pipeline_options(p)


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "pipeline", "pre- and post-processing the server runs around the model (raw inputs in, answers out)"
    )
    kind = g.add_mutually_exclusive_group()
    kind.add_argument(
        "--image",
        nargs="?",
        const="",
        metavar="KEY=VALUE,...",
        help="JPEG/PNG files in; keys size=HxW resize=N channels=RGB|BGR|L layout=NCHW|NHWC scale=F "
        "mean=a/b/c std=a/b/c (size, layout and channels default to the model input's shape)",
    )
    kind.add_argument("--tokenizer", type=Path, metavar="TOKENIZER_JSON", help="text in, through this tokenizer.json")
    kind.add_argument(
        "--ids", action="store_true", help='JSON objects of ids in, e.g. {"user_id": 7, "candidates": [...]}'
    )
    g.add_argument("--max-length", type=int, default=128, help="text: truncate to this many tokens (default 128)")
    answer = g.add_mutually_exclusive_group()
    answer.add_argument(
        "--labels", type=Path, metavar="LABELS_TXT", help="labels and scores out (one class name a line)"
    )
    answer.add_argument("--classes", action="store_true", help="class indices and scores out (no labels file)")
    answer.add_argument("--top-k-items", metavar="INPUT", help="the best candidates of INPUT out, with their scores")
    answer.add_argument("--embedding", choices=["mean", "cls", "none"], help="a vector out, pooled over tokens")
    g.add_argument("--activation", choices=["softmax", "sigmoid", "none"], default="softmax", help="labels: scores")
    g.add_argument("--top-k", type=int, help="how many labels or items to answer (default 5 labels, 10 items)")
    g.add_argument("--no-normalize", action="store_true", help="embedding: skip L2 normalisation")
    g.add_argument("--pipeline-output", metavar="NAME", help="the model output the answers come from (default: first)")
    g.add_argument(
        "--raw-example",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a raw input (image, UTF-8 text, JSON object) verification runs through the pipeline (repeatable)",
    )


def _pipeline_source(args: argparse.Namespace) -> Any:
    """The ``PipelineSource`` the pipeline options describe, or ``None`` when none was given."""
    from model_package.pipeline.attach import PipelineSource, parse_image_options

    inputs: dict[str, Any] | None = None
    if args.image is not None:
        inputs = parse_image_options(args.image)
    elif args.tokenizer is not None:
        inputs = {"kind": "text", "max_length": args.max_length}
    elif args.ids:
        inputs = {"kind": "ids"}
    outputs: dict[str, Any] | None = None
    if args.labels is not None or args.classes:
        outputs = {"kind": "labels", "activation": args.activation}
    elif args.top_k_items is not None:
        outputs = {"kind": "top_k", "items": args.top_k_items}
    elif args.embedding is not None:
        outputs = {"kind": "embedding", "pooling": args.embedding, "normalize": not args.no_normalize}
    if inputs is None and outputs is None:
        if args.raw_example:
            raise UsageError("--raw-example needs a pipeline: --image, --tokenizer or --ids, and what to answer")
        return None
    if inputs is None or outputs is None:
        raise UsageError(
            "a pipeline needs both what comes in (--image, --tokenizer or --ids) and what goes out "
            "(--labels, --classes, --top-k-items or --embedding)"
        )
    if args.top_k is not None:
        outputs["top_k"] = args.top_k
    if args.pipeline_output is not None:
        outputs["output"] = args.pipeline_output
    return PipelineSource(
        input=inputs, output=outputs, raw_examples=args.raw_example, tokenizer=args.tokenizer, labels=args.labels
    )


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.dynamic_axes import parse_dynamic_axes
    from model_package.export import export_model, load_factory

    declared = parse_dynamic_axes(args.dynamic_axes)
    factory = load_factory(args.factory)
    _log.info("exporting", extra={"factory": args.factory, "format": args.format or "default"})
    checked: dict[str, Any] = {}
    manifest = export_model(
        factory.model,
        factory.example_inputs,
        args.out,
        dynamic_axes={**(factory.dynamic_axes or {}), **declared},
        name=args.name,
        version=args.package_version,
        format=args.format,
        code_dir=args.code,
        rtol=args.rtol,
        atol=args.atol,
        overwrite=args.overwrite,
        pipeline=_pipeline_source(args),
        verify=not args.no_verify,
        check=None if args.no_verify else functools.partial(_verify_staged, checked),
    )
    return _created(args, manifest, checked)


def _cmd_import(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.dynamic_axes import parse_dynamic_axes
    from model_package.example import load_arrays
    from model_package.export import import_artifact

    declared = parse_dynamic_axes(args.dynamic_axes)
    inputs = load_arrays(_existing(args.example_inputs)) if args.example_inputs else None
    expected = load_arrays(_existing(args.expected_outputs)) if args.expected_outputs else None
    checked: dict[str, Any] = {}
    manifest = import_artifact(
        args.artifact,
        args.out,
        name=args.name,
        version=args.package_version,
        format=args.format,
        example_inputs=inputs,
        expected_outputs=expected,
        dynamic_axes=declared,
        signature=args.signature,
        code_dir=args.code,
        rtol=args.rtol,
        atol=args.atol,
        overwrite=args.overwrite,
        pipeline=_pipeline_source(args),
        verify=not args.no_verify,
        check=None if args.no_verify else functools.partial(_verify_staged, checked),
    )
    return _created(args, manifest, checked)


#: Packaging can still choose the tolerances (verifying a finished package cannot).
_LOOSER_TOLERANCES = (
    " (a model computing in float16 or converted to ONNX can differ this much and still be right: package it "
    "with looser --rtol/--atol)"
)


def _verify_staged(results: dict[str, Any], package_dir: Path, manifest: Manifest) -> None:
    """Load the finished package as the server does and run its example, before it is moved into place.

    A package that fails here is never written (``build_package``): a directory that looks finished
    but answers wrongly would be packed and pushed, and would block the corrected run's ``--out``.
    """
    from model_package.verify import verify_behaviour

    # User code first, as the server loads it: its imports may register what the model needs (Keras custom layers).
    if manifest.code is not None:
        results["user_code"] = _verify_user_code(package_dir, manifest)
    report = verify_behaviour(package_dir, manifest, mismatch_advice=_LOOSER_TOLERANCES)
    results["max_abs_error"] = report.worst
    if manifest.pipeline is not None:
        results["pipeline"] = _pipeline_summary(manifest, report.pipeline_error)


def _created(args: argparse.Namespace, manifest: Manifest, checked: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"package": str(args.out), "name": manifest.name, "format": manifest.format, **checked}
    _log.info("package created", extra={"path": str(args.out), "files": len(manifest.files)})
    return result


def _pipeline_summary(manifest: Manifest, error: float | None) -> str:
    assert manifest.pipeline is not None
    flow = f"{manifest.pipeline.input.kind} -> {manifest.pipeline.output.kind}"
    count = len(manifest.pipeline.example.inputs)
    return f"ok ({flow}; raw example of {count} ran, max score error {error or 0.0:.3g})"


def _verify_user_code(package_dir: Path, manifest: Manifest, shown_as: str | None = None) -> str:
    """Import and run the package's code/ with the serving entrypoint's own loader (see architecture.md).

    The server's conventions for user code live in ``inference.user_code``; running that very code here,
    rather than a second copy of the SageMaker toolkit rules, is what makes a green check mean servable.
    """
    from inference.user_code import verify_user_code

    try:
        ran = verify_user_code(package_dir, manifest)
    except ModelPackageError as exc:
        if shown_as is None:
            raise
        # A verified archive is unpacked into a temporary directory, which means nothing to the user.
        raise type(exc)(str(exc).replace(f"{package_dir}/", shown_as)) from exc
    return f"ok (example ran through {', '.join(ran)})" if ran else "ok (imported and loaded)"


def _cmd_pack(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.archive import pack

    package_dir = _existing(args.package_dir)
    manifest = read_manifest(package_dir)
    dest = args.out or package_dir.with_name(package_dir.name + ".tar.gz")
    with progress(f"packing {package_dir.name}", manifest.total_size) as update:
        result = pack(package_dir, dest, threads=args.threads, progress=update)
    return {"archive": str(result.path), "digest": result.digest, "size": result.size}


def _cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.archive import extract
    from model_package.verify import verify_behaviour, verify_integrity

    path = _existing(args.path)
    with tempfile.TemporaryDirectory(prefix="model-package-verify-") as tmp:
        if path.is_dir():
            if args.digest:
                raise UsageError("--digest applies to archives; pack the directory or pass the model.tar.gz")
            manifest = read_manifest(path)
            with progress("hashing", manifest.total_size) as update:
                verify_integrity(path, update)
            package_dir = path
        else:
            package_dir = Path(tmp) / "package"
            with progress("unpacking", path.stat().st_size) as update:
                manifest = extract(path, package_dir, expected_digest=args.digest, progress=update)
        result: dict[str, Any] = {"package": f"{manifest.name} {manifest.version}", "integrity": "ok"}
        if not args.integrity_only:
            # User code first, as the server loads it: its imports may register what the model needs.
            if manifest.code is not None:
                shown = None if package_dir == path else f"{path}:"
                result["user_code"] = _verify_user_code(package_dir, manifest, shown)
            report = verify_behaviour(package_dir, manifest)
            result["behaviour"] = "ok"
            result["max_abs_error"] = report.worst
            if manifest.pipeline is not None:
                result["pipeline"] = _pipeline_summary(manifest, report.pipeline_error)
    return result


def _cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    path = _existing(args.path)
    if path.is_dir():
        manifest = read_manifest(path)
    elif path.name.endswith((".tar.gz", ".tgz")):
        manifest = _manifest_from_archive(path)
    else:
        manifest = parse_manifest(path.read_bytes(), source=str(path))
    data: dict[str, Any] = manifest.model_dump(mode="json")
    if not args.json:
        data["files"] = f"{len(manifest.files)} files, {manifest.total_size} bytes"
    return data


def _manifest_from_archive(path: Path) -> Manifest:
    import tarfile

    from model_package.errors import IntegrityError

    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.name.removeprefix("./") == "manifest.json" and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return parse_manifest(handle.read(), source=f"{path}:manifest.json")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is not a valid gzip-compressed tar archive: {exc}") from exc
    raise IntegrityError(f"{path} has no manifest.json at its root")


def _cmd_push(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.publish import push

    path = _existing(args.path)
    size = path.stat().st_size if path.is_file() else read_manifest(path).total_size
    with progress(f"publishing {path.name}", size) as update:
        result = push(path, args.store, layout=args.layout, kms_key_id=args.kms_key_id, progress=update)
    return {"uri": result.uri, "digest": result.digest, "uploaded": result.uploaded}


def _cmd_pull(args: argparse.Namespace) -> dict[str, Any]:
    from model_package.publish import pull

    with progress("downloading", None) as update:
        manifest = pull(args.uri, args.dest, progress=update)
    return {"package": str(args.dest), "name": manifest.name, "version": manifest.version}


def _existing(path: Path) -> Path:
    if not path.exists():
        raise MissingFileError(f"{path} does not exist")
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
