"""Varying axes a ``torch.export`` program ties together or bounds are checked before it runs.

Without the check, a client's mismatched mask or an over-long sequence failed inside the program's
guards ("Guard failed: ..."), a model failure: a 500 counted against the endpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from model_package.errors import InvalidInputError
from model_package.export import import_artifact
from model_package.formats import get_format
from model_package.manifest import read_manifest

pytestmark = pytest.mark.torch


class MaskedSum(torch.nn.Module):
    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum(dim=1, keepdim=True)


def _package(tmp_path: Path, *, most: int | None) -> Path:
    sequence = torch.export.Dim("sequence", max=most) if most else torch.export.Dim("sequence")
    batch = torch.export.Dim("batch")
    example = (torch.ones(2, 5), torch.ones(2, 5))
    program = torch.export.export(
        MaskedSum(), example, dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence})
    )
    source = tmp_path / "masked.pt2"
    torch.export.save(program, str(source))
    out = tmp_path / "pkg"
    import_artifact(
        source,
        out,
        name="masked",
        version="1",
        example_inputs={"values": np.ones((2, 5), np.float32), "mask": np.ones((2, 5), np.float32)},
    )
    return out


def _predict(package: Path, values: int, mask: int) -> dict[str, np.ndarray]:
    manifest = read_manifest(package)
    model = get_format(manifest.format).load(package, manifest, threads=1)
    return model.predict({"values": np.ones((1, values), np.float32), "mask": np.ones((1, mask), np.float32)})


def test_tied_axes_of_different_sizes_are_refused_naming_both(tmp_path: Path) -> None:
    package = _package(tmp_path, most=None)

    with pytest.raises(InvalidInputError) as caught:
        _predict(package, 3, 2)

    message = str(caught.value)
    assert "'values' (axis 1) and 'mask' (axis 1) must have the same size" in message and "got 3 and 2" in message
    assert "Guard failed" not in message
    (total,) = _predict(package, 7, 7).values()
    assert total.tolist() == [[7.0]], "equal sizes still run, at any length"


def test_a_declared_maximum_is_refused_before_the_program_runs(tmp_path: Path) -> None:
    package = _package(tmp_path, most=16)

    with pytest.raises(InvalidInputError, match=r"'values' has size 20 on axis 1; this model takes at most 16 there"):
        _predict(package, 20, 20)
    (total,) = _predict(package, 16, 16).values()
    assert total.tolist() == [[16.0]]


class Positions(torch.nn.Module):
    """Token ids plus learned positions, the positions made as ``how`` says."""

    def __init__(self, how: str, rows: int) -> None:
        super().__init__()
        self.how = how
        self.tokens = torch.nn.Embedding(50, 4)
        self.table = torch.nn.Parameter(torch.randn(rows, 4))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.how == "offset":  # RoBERTa's positions start past the padding id
            positions = (torch.arange(ids.shape[1]) + 2).unsqueeze(0).expand(ids.shape[0], -1)
            placed = torch.nn.functional.embedding(positions, self.table)
        elif self.how == "indexed":
            placed = self.table[torch.arange(ids.shape[1])].unsqueeze(0)
        else:  # from the data: no bound can be read off the graph
            positions = torch.cumsum(torch.ones_like(ids), dim=1) - 1
            placed = torch.nn.functional.embedding(positions.clamp(max=self.table.shape[0] - 1), self.table)
        return (self.tokens(ids) + placed).sum(dim=1)


def _positions_package(tmp_path: Path, how: str, rows: int) -> Path:
    ids = torch.randint(0, 50, (2, 5))
    program = torch.export.export(
        Positions(how, rows), (ids,), dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")},)
    )
    source = tmp_path / f"{how}.pt2"
    torch.export.save(program, str(source))
    out = tmp_path / how
    import_artifact(source, out, name=how, version="1", example_inputs={"ids": ids.numpy()})
    return out


def _ids(package: Path, length: int) -> dict[str, np.ndarray]:
    manifest = read_manifest(package)
    model = get_format(manifest.format).load(package, manifest, threads=1)
    return model.predict({"ids": np.ones((1, length), np.int64)})


@pytest.mark.parametrize(("how", "rows", "most"), [("offset", 34, 32), ("indexed", 16, 16)])
def test_a_table_of_positions_bounds_the_sequence_it_is_indexed_by(
    tmp_path: Path, how: str, rows: int, most: int
) -> None:
    # torch.export records no bound for arange(n) indexing a table (an index error is no shape guard):
    # one token past the table failed inside the program, a 500.
    package = _positions_package(tmp_path, how, rows)

    refusal = rf"'ids' has size {most + 1} on axis 1; this model takes at most {most}"
    with pytest.raises(InvalidInputError, match=refusal):
        _ids(package, most + 1)
    (summed,) = _ids(package, most).values()
    assert summed.shape == (1, 4)


def test_positions_computed_from_the_data_set_no_bound(tmp_path: Path) -> None:
    package = _positions_package(tmp_path, "data", 8)

    (summed,) = _ids(package, 40).values()  # the model clamps: any length runs
    assert summed.shape == (1, 4)


class Sinusoids(torch.nn.Module):
    """Positions from a table built for the sequence at hand (sinusoids of arange(n)): any length runs."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(ids.shape[1])
        table = torch.sin(steps.unsqueeze(1).float() * torch.arange(1, 5).float())
        return (torch.nn.functional.embedding(steps, table).unsqueeze(0) + ids.unsqueeze(-1)).sum(dim=1)


def test_a_table_that_grows_with_the_sequence_sets_no_bound(tmp_path: Path) -> None:
    # Its row count is the sequence's own symbol: read as the example's length, it refused the export's
    # check of one token more ("takes at most 5").
    ids = torch.randint(0, 50, (2, 5))
    program = torch.export.export(
        Sinusoids(), (ids,), dynamic_shapes=({0: torch.export.Dim("b"), 1: torch.export.Dim("n")},)
    )
    source = tmp_path / "sinus.pt2"
    torch.export.save(program, str(source))
    import_artifact(source, tmp_path / "sinus", name="sinus", version="1", example_inputs={"ids": ids.numpy()})

    (summed,) = _ids(tmp_path / "sinus", 40).values()
    assert summed.shape == (1, 4)


def test_a_graph_the_reader_cannot_follow_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading position tables is a safeguard: a fault in it loses the bound (logged), not the model."""
    from model_package.formats import torch_graph

    package = _positions_package(tmp_path, "offset", 34)

    def broken(_: object) -> dict[object, int]:
        raise IndexError("an op this reader has not seen")

    monkeypatch.setattr(torch_graph, "position_table_bounds", broken)
    (summed,) = _ids(package, 8).values()
    assert summed.shape == (1, 4)
