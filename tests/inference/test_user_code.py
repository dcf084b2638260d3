"""SageMaker-toolkit user code (code/inference.py) run unchanged on real PyTorch packages.

Every package here is built by ``export_model`` from a real model and a
``code/`` directory from ``user_code_fixtures/`` (or written by the test), then
loaded with :class:`UserCodeHandler` exactly as the server does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shutil
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference.errors import ApiError, BadRequestError, ModelError, NotAcceptableError, http_error  # noqa: E402
from inference.user_code import CUSTOM_ATTRIBUTES_HEADER, RequestContext, UserCodeHandler, install_requirements  # noqa: E402
from model_package.errors import InvalidInputError, LoadError  # noqa: E402
from model_package.export import export_model  # noqa: E402
from model_package.formats import get_format  # noqa: E402
from model_package.manifest import Manifest, read_manifest  # noqa: E402
from model_package.verify import check_file_set  # noqa: E402
from tests.model_package.torch_models import dict_head_inputs, make_dict_head  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).parent / "user_code_fixtures"
JSON = "application/json"
ROWS = dict_head_inputs(3, seed=7)["x"]


PackageFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFactory:
    """Build (once per module and code directory) a DictHead package shipping that code/."""
    built: dict[str, Path] = {}

    def make(fixture: str | None = None, *, code: Path | None = None, name: str = "demo") -> Path:
        code_dir = code if code is not None else FIXTURES / str(fixture)
        key = f"{name}:{code_dir}"
        if key not in built:
            out = tmp_path_factory.mktemp("pkg") / name
            export_model(make_dict_head(), dict_head_inputs(3), out, name=name, version="1.0.0", code_dir=code_dir)
            built[key] = out
        return built[key]

    return make


@pytest.fixture
def write_code(tmp_path: Path) -> Callable[..., Path]:
    """Write a code/ directory with the given files (dedented) and return it."""

    def write(files: dict[str, str]) -> Path:
        code = tmp_path / f"code-{len(list(tmp_path.iterdir()))}"
        code.mkdir()
        for name, text in files.items():
            (code / name).write_text(textwrap.dedent(text))
        return code

    return write


@pytest.fixture(autouse=True)
def _restore_import_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Undo what loading user code leaves behind (code/ on sys.path, its modules), so tests stay independent."""
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    sys.path[:] = path
    base = tmp_path_factory.getbasetemp().resolve()
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None)
        if file and Path(file).resolve().is_relative_to(base):
            del sys.modules[name]


def load(package_dir: Path, *, default_accept: str = JSON) -> UserCodeHandler:
    """Load the package's user code with the package's own model as the default, like the server."""
    manifest = read_manifest(package_dir)
    handler = UserCodeHandler.load(
        package_dir,
        manifest,
        default_model=lambda: get_format(manifest.format).load(package_dir, manifest),
        default_accept=default_accept,
    )
    assert handler is not None
    return handler


def request(
    handler: UserCodeHandler,
    body: bytes,
    content_type: str = JSON,
    accept: str = JSON,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str, RequestContext]:
    context = RequestContext.from_headers({"Content-Type": content_type, "Accept": accept, **(headers or {})})
    payload, media_type = handler.invoke(body, content_type, accept, context)
    return payload, media_type, context


def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The live model's outputs, to compare served predictions with."""
    with torch.no_grad():
        out = make_dict_head()(torch.from_numpy(rows))
    return {name: value.numpy() for name, value in out.items()}


# ---------------------------------------------------------------------------------------------------------------------
# SageMaker-style scripts


def test_four_hooks_parse_json_and_csv_themselves_and_return_body_and_content_type(package: PackageFactory) -> None:
    handler = load(package("sagemaker_style"))
    expected = reference(ROWS)
    assert handler.hooks == ("model_fn", "input_fn", "predict_fn", "output_fn")
    assert isinstance(handler.model, torch.nn.Module)  # what model_fn returned, not the package loader's model

    body, media_type, _ = request(handler, json.dumps({"instances": ROWS.tolist()}).encode())
    assert media_type == JSON
    result = json.loads(body)
    np.testing.assert_allclose(result["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
    assert result["best"] == expected["best"].tolist()

    csv = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in ROWS).encode()
    body, media_type, _ = request(handler, csv, content_type="text/csv", accept="text/csv")
    assert (body, media_type) == ("".join(f"{b}\n" for b in expected["best"]).encode(), "text/csv")


def test_loading_user_code_leaves_the_package_files_untouched(package: PackageFactory) -> None:
    package_dir = package("sagemaker_style")
    load(package_dir)
    # No __pycache__/ in code/: a package holds exactly the files its manifest lists.
    check_file_set(package_dir, read_manifest(package_dir))


def test_a_helper_module_in_code_is_importable(package: PackageFactory) -> None:
    handler = load(package("sagemaker_style"))
    body, _, _ = request(handler, json.dumps(ROWS[:1].tolist()).encode())
    assert json.loads(body)["best"] == reference(ROWS[:1])["best"].tolist()
    assert "preprocessing" in sys.modules  # code/ is importable under its own module names, as in the toolkit


def test_non_utf8_json_body_is_a_bad_request(package: PackageFactory) -> None:
    handler = load(package("sagemaker_style"))
    with pytest.raises(BadRequestError, match="not valid utf-8"):
        request(handler, b'{"instances": [[1, 2, 3, 4, \xff]]}')


def test_valueerror_from_input_fn_is_a_bad_request(package: PackageFactory) -> None:
    handler = load(package("sagemaker_style"))
    with pytest.raises(BadRequestError, match=r"^input_fn rejected the request: unsupported content type 'text/plain'"):
        request(handler, b"1,2,3,4,5", content_type="text/plain")
    with pytest.raises(BadRequestError, match="input_fn rejected the request"):
        request(handler, b"{not json")


def test_concurrent_requests_from_worker_threads(package: PackageFactory) -> None:
    handler = load(package("sagemaker_style"))
    batches = [dict_head_inputs(2, seed=seed)["x"] for seed in range(16)]

    def run(rows: np.ndarray) -> list[int]:
        body, _, _ = request(handler, json.dumps(rows.tolist()).encode())
        return list(json.loads(body)["best"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, batches))
    assert results == [reference(rows)["best"].tolist() for rows in batches]


# ---------------------------------------------------------------------------------------------------------------------
# The context argument and custom attributes


def test_hooks_with_and_without_context_and_custom_attributes_echoed(package: PackageFactory) -> None:
    package_dir = package("with_context")
    handler = load(package_dir)
    assert handler.model["loaded_from"] == str(package_dir)  # model_fn(model_dir, context)

    attributes = "top_k=2; trace=abc-123"
    body, media_type, context = request(
        handler, json.dumps(ROWS.tolist()).encode(), headers={CUSTOM_ATTRIBUTES_HEADER: attributes}
    )
    expected = np.argsort(-reference(ROWS)["scores"], axis=-1)[:, :2]
    assert json.loads(body) == {"top_k": expected.tolist(), "raw": attributes}
    assert media_type == JSON  # output_fn returned (body, accept)
    assert context.custom_attributes == attributes
    assert context.response_headers == {CUSTOM_ATTRIBUTES_HEADER: f"trace=abc-123;model={package_dir.name}"}


def test_each_request_gets_its_own_context(package: PackageFactory) -> None:
    handler = load(package("with_context"))
    _, _, first = request(handler, b"[[0, 0, 0, 0, 0]]", headers={CUSTOM_ATTRIBUTES_HEADER: "trace=one"})
    _, _, second = request(handler, b"[[0, 0, 0, 0, 0]]")
    assert first.response_headers[CUSTOM_ATTRIBUTES_HEADER].startswith("trace=one;")
    assert second.response_headers[CUSTOM_ATTRIBUTES_HEADER].startswith("trace=none;")


def test_request_context_answers_torchserve_context_calls() -> None:
    context = RequestContext.from_headers([("Content-Type", JSON), (CUSTOM_ATTRIBUTES_HEADER, "a=1")])
    assert context.custom_attributes == "a=1"
    assert context.get_request_header(0, "content-type") == JSON
    assert context.get_request_header(0, CUSTOM_ATTRIBUTES_HEADER) == "a=1"
    assert context.get_all_request_header(0) == {"content-type": JSON, CUSTOM_ATTRIBUTES_HEADER.lower(): "a=1"}
    context.set_response_header(0, "X-Trace", "t")
    assert context.get_response_headers(0) == {"X-Trace": "t"}
    with pytest.raises(IndexError, match="one request per call"):
        context.get_request_header(1, "accept")


# ---------------------------------------------------------------------------------------------------------------------
# transform_fn and return-value conventions


def test_transform_fn_alone_on_the_packages_own_model(package: PackageFactory) -> None:
    handler = load(package("transform_only"))
    assert handler.hooks == ("transform_fn",)
    body, media_type, _ = request(handler, json.dumps(ROWS.tolist()).encode(), accept="*/*")
    # A one-element list is unwrapped; a body without a content type is labelled with the (default) accept.
    assert json.loads(body) == {"best": reference(ROWS)["best"].tolist(), "content_type": JSON}
    assert media_type == JSON


def test_missing_accept_uses_the_configured_default_accept(package: PackageFactory) -> None:
    handler = load(package("transform_only"), default_accept="application/x-custom")
    _, media_type, _ = request(handler, b"[[1, 2, 3, 4, 5]]", accept="")
    assert media_type == "application/x-custom"
    _, media_type, _ = request(handler, b"[[1, 2, 3, 4, 5]]", accept="text/plain;q=0.9, */*")
    assert media_type == "text/plain"


def test_a_body_returned_without_a_type_is_labelled_with_the_type_the_client_prefers(package: PackageFactory) -> None:
    """q-values count: a type the client refuses (q=0) or ranks lower is not the label."""
    handler = load(package("transform_only"))
    for accept in ("text/plain;q=0, application/x-custom", "text/plain;q=0.5, application/x-custom"):
        _, media_type, _ = request(handler, b"[[1, 2, 3, 4, 5]]", accept=accept)
        assert media_type == "application/x-custom", accept
    _, media_type, _ = request(handler, b"[[1, 2, 3, 4, 5]]", accept="text/plain;q=0, */*;q=0.5")
    assert media_type == "application/octet-stream", "no concrete type the client accepts: raw bytes"


def test_output_fn_returning_a_json_value_none_or_a_bad_tuple(
    package: PackageFactory, write_code: Callable[..., Path]
) -> None:
    handler = load(package("failing_hooks"))
    body, media_type, _ = request(handler, json.dumps({"rows": ROWS[:2].tolist()}).encode())
    assert (json.loads(body), media_type) == (reference(ROWS[:2])["best"].tolist(), JSON)
    # A one-element list of numbers is a JSON value, not the batch convention.
    body, _, _ = request(handler, json.dumps({"rows": ROWS[:1].tolist()}).encode())
    assert json.loads(body) == reference(ROWS[:1])["best"].tolist()
    with pytest.raises(ModelError, match=r"^output_fn returned None"):
        request(handler, json.dumps({"rows": ROWS[:1].tolist()}).encode(), accept="application/x-nothing")

    code = write_code(
        {
            "inference.py": """
            def transform_fn(model, body, content_type, accept):
                return body, "text/plain", "extra"
            """
        }
    )
    with pytest.raises(ModelError, match=r"transform_fn returned a tuple of 3 items"):
        request(load(package(code=code)), b"x", content_type="application/octet-stream")


# ---------------------------------------------------------------------------------------------------------------------
# Failures


def test_a_hook_raising_is_a_model_error_naming_the_hook(
    package: PackageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    handler = load(package("failing_hooks"))
    with pytest.raises(ModelError) as raised:
        request(handler, json.dumps({"rows": ROWS.tolist()}).encode())
    # The body names the hook and the exception type; the details stay with the chained exception,
    # which the server logs with the request id.
    assert str(raised.value) == "predict_fn in inference.py failed with RuntimeError"
    assert raised.value.status == 500
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert " ".join(str(raised.value.__cause__).split()) == "this model takes at most 2 rows per request"


def test_api_errors_from_user_code_pass_through(package: PackageFactory) -> None:
    handler = load(package("failing_hooks"))
    with pytest.raises(BadRequestError, match=r"^the body needs a 'rows' field$"):
        request(handler, b"{}")
    with pytest.raises(BadRequestError, match=r"^input_fn rejected the request: "):
        request(handler, b"[not json")


def test_toolkit_errors_keep_their_status(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    code = write_code(
        {
            "inference.py": """
            class BaseInferenceToolkitError(Exception):
                # The shape of sagemaker_inference.errors.BaseInferenceToolkitError.
                def __init__(self, status_code, message, phrase):
                    super().__init__(status_code, message, phrase)
                    self.status_code, self.message, self.phrase = status_code, message, phrase

            def transform_fn(model, body, content_type, accept):
                raise BaseInferenceToolkitError(422, "the image is too dark", "Unprocessable")
            """
        }
    )
    with pytest.raises(ApiError, match=r"^the image is too dark$") as raised:
        request(load(package(code=code)), b"{}")
    assert raised.value.status == 422


def test_response_headers_are_checked(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    code = write_code(
        {
            "inference.py": """
            def transform_fn(model, body, content_type, accept, context):
                context.response_headers["Content-Length"] = "1"
                context.response_headers["X-Kind"] = body.decode()
                return b"ok", "text/plain"
            """
        }
    )
    handler = load(package(code=code))
    _, _, context = request(handler, b"plain", content_type="application/octet-stream")
    assert context.response_headers == {"X-Kind": "plain"}  # the server owns Content-Length
    with pytest.raises(ModelError, match="invalid response header 'X-Kind'"):
        request(handler, b"bad\r\nSet-Cookie: x=1", content_type="application/octet-stream")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-A: injected", "1"),
        ("X A", "1"),
        (":status", "1"),
        ("Transfer-Encoding ", "chunked"),
        ("X-Kind", "a\x01b"),
        ("X-Kind", "a\x7fb"),
        ("X-Kind", "\u4e2d"),
    ],
    ids=["colon", "space", "pseudo-header", "reserved name with a space", "control", "delete", "not latin-1"],
)
def test_a_response_header_outside_http_grammar_is_a_model_error_naming_it(
    package: PackageFactory, write_code: Callable[..., Path], name: str, value: str
) -> None:
    """uvicorn dropped the connection without an answer (and without a request id) for these."""
    code = write_code(
        {
            "inference.py": f"""
            def transform_fn(model, body, content_type, accept, context):
                context.response_headers[{name!r}] = {value!r}
                return b"ok", "text/plain"
            """
        }
    )
    with pytest.raises(ModelError, match=f"invalid response header {re.escape(repr(name))}"):
        request(load(package(code=code)), b"x", content_type="application/octet-stream")


@pytest.mark.parametrize("content_type", ["text/plain\x0b", "text/\x7fplain", "text/plain; charset=\u4e2d"])
def test_a_content_type_outside_http_grammar_is_a_model_error(
    package: PackageFactory, write_code: Callable[..., Path], content_type: str
) -> None:
    code = write_code(
        {
            "inference.py": f"""
            def transform_fn(model, body, content_type, accept):
                return b"ok", {content_type!r}
            """
        }
    )
    with pytest.raises(ModelError, match="returned the content type"):
        request(load(package(code=code)), b"x", content_type="application/octet-stream")


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_hook_exiting_is_its_requests_failure_not_the_servers_end(
    package: PackageFactory, write_code: Callable[..., Path], raised: str
) -> None:
    """sys.exit() in a hook stopped the whole server (exit code 3); with workers, three such requests
    stopped the supervisor too."""
    code = write_code(
        {
            "inference.py": f"""
            def predict_fn(data, model):
                raise {raised}
            """
        }
    )
    with pytest.raises(ModelError, match=r"predict_fn in inference.py failed with (SystemExit|KeyboardInterrupt)"):
        request(load(package(code=code)), json.dumps(ROWS.tolist()).encode())


def test_import_error_is_a_load_error_naming_the_file_and_line(package: PackageFactory) -> None:
    package_dir = package("import_fails")
    with pytest.raises(LoadError) as raised:
        load(package_dir)
    message = str(raised.value)
    assert f"{package_dir / 'code' / 'inference.py'}:5" in message
    assert "ValueError: could not convert string to float: 'not-a-number'" in message
    assert "\n" not in message
    assert not [name for name in sys.modules if name.startswith("_model_user_code_demo")]  # nothing half-imported


def test_missing_dependency_points_at_the_image_or_requirements(package: PackageFactory) -> None:
    with pytest.raises(LoadError, match="No module named 'definitely_not_installed_dependency'") as raised:
        load(package("missing_dependency"))
    assert "MODEL_SERVER_INSTALL_REQUIREMENTS" in str(raised.value)


def test_syntax_error_names_the_line(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    code = write_code({"inference.py": "def predict_fn(data, model)\n    return data\n"})
    with pytest.raises(LoadError, match=r"inference\.py:1\): SyntaxError: expected ':'"):
        load(package(code=code))


def test_model_fn_failure_is_a_load_error(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    code = write_code(
        {
            "inference.py": """
            import os

            def model_fn(model_dir):
                return open(os.path.join(model_dir, "model.pth"), "rb")
            """
        }
    )
    with pytest.raises(LoadError, match=r"^model_fn in .*inference\.py failed: FileNotFoundError: .*model\.pth"):
        load(package(code=code))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def input_fn(a, b, c, d):\n    pass\n", r"input_fn\(a, b, c, d\) does not fit the SageMaker hook"),
        (
            "def transform_fn(m, b, c, a):\n    pass\n\ndef output_fn(p, a):\n    pass\n",
            "defines transform_fn together with output_fn",
        ),
        ("predict_fn = 42\n", "predict_fn must be a function"),
    ],
)
def test_hook_definitions_are_checked_at_load(
    package: PackageFactory, write_code: Callable[..., Path], source: str, message: str
) -> None:
    with pytest.raises(LoadError, match=message):
        load(package(code=write_code({"inference.py": source})))


def test_package_without_code_has_no_handler(package: PackageFactory) -> None:
    package_dir = package("transform_only")
    manifest = read_manifest(package_dir).model_copy(update={"code": None})

    def never() -> None:
        raise AssertionError("the model must not be loaded for a package without code")

    assert UserCodeHandler.load(package_dir, manifest, default_model=never) is None


# ---------------------------------------------------------------------------------------------------------------------
# Several packages in one process


def test_two_packages_with_same_named_modules_do_not_clash(package: PackageFactory) -> None:
    first = load(package("clash_a", name="clash-a"))
    second = load(package("clash_b", name="clash-b"))
    assert request(first, b"", content_type="application/octet-stream")[0] == b"package-a"
    assert request(second, b"", content_type="application/octet-stream")[0] == b"package-b"
    # Loading a package again re-imports its code under a new name, without disturbing the others.
    again = load(package("clash_b", name="clash-b"))
    assert request(again, b"", content_type="application/octet-stream")[0] == b"package-b"
    assert request(first, b"", content_type="application/octet-stream")[0] == b"package-a"


# ---------------------------------------------------------------------------------------------------------------------
# The defaults around user hooks


def test_default_output_is_json_for_plain_predictions(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    code = write_code(
        {
            "inference.py": """
            import json

            import numpy as np

            def input_fn(body, content_type):
                return np.asarray(json.loads(body), dtype=np.float32)

            def predict_fn(data, model):
                out = model.predict({"x": data})
                return {"best": out["best"], "top": np.float32(out["scores"].max()), 7: "int keys"}
            """
        }
    )
    handler = load(package(code=code))
    body, media_type, _ = request(handler, json.dumps(ROWS.tolist()).encode(), accept="application/*")
    expected = reference(ROWS)
    result = json.loads(body)
    assert media_type == JSON
    assert result["best"] == expected["best"].tolist()
    assert result["top"] == pytest.approx(float(expected["scores"].max()), rel=1e-6)
    assert result["7"] == "int keys"
    with pytest.raises(NotAcceptableError, match="can only be returned as application/json"):
        request(handler, json.dumps(ROWS.tolist()).encode(), accept="text/csv")
    # q=0 excludes a type (RFC 9110), even when a wildcard would otherwise match it.
    with pytest.raises(NotAcceptableError, match="can only be returned as application/json"):
        request(handler, json.dumps(ROWS.tolist()).encode(), accept="*/*;q=0.5, application/json;q=0")


def test_default_predict_calls_a_torch_module_without_grad(
    package: PackageFactory, write_code: Callable[..., Path]
) -> None:
    code = write_code(
        {
            "inference.py": """
            import json

            import torch

            def model_fn(model_dir):
                torch.manual_seed(0)
                return torch.nn.Sequential(torch.nn.Linear(5, 2), torch.nn.Dropout(0.9)).train()

            def input_fn(body, content_type):
                return torch.tensor(json.loads(body))

            def output_fn(prediction, accept):
                # .numpy() fails on tensors that require grad: the default predict_fn must not record it.
                return json.dumps(prediction.numpy().tolist()), accept
            """
        }
    )
    handler = load(package(code=code))
    assert not handler.model.training  # put in eval mode once, as the PyTorch toolkit's predict_fn does
    body, _, _ = request(handler, json.dumps(ROWS.tolist()).encode())
    with torch.no_grad():
        expected = handler.model(torch.from_numpy(ROWS)).numpy()
    np.testing.assert_allclose(json.loads(body), expected, rtol=1e-6)


def test_default_input_and_output_around_a_user_predict_fn(package: PackageFactory) -> None:
    handler = load(package("predict_only"))
    payload, media_type, context = request(handler, json.dumps({"inputs": {"x": ROWS.tolist()}}).encode())
    assert media_type.startswith(JSON)
    assert context.response_headers == {"x-predicted-by": "predict_fn"}
    predictions = json.loads(payload)["predictions"]
    assert [row["best"] for row in predictions] == reference(ROWS)["best"].tolist()


def test_all_defaults_with_an_empty_inference_py(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    handler = load(package(code=write_code({"inference.py": '"""No hooks: every step is a default."""\n'})))
    assert handler.hooks == ()
    payload, media_type, _ = request(handler, json.dumps({"instances": ROWS.tolist()}).encode())
    assert media_type.startswith(JSON)
    expected = reference(ROWS)
    predictions = json.loads(payload)["predictions"]
    np.testing.assert_allclose([row["scores"] for row in predictions], expected["scores"], rtol=1e-5, atol=1e-6)
    # The default input_fn is the server's codecs: a body that does not fit the signature is a 400.
    with pytest.raises(BadRequestError):
        request(handler, b'{"instances": [["a", "b"]]}')
    with pytest.raises(InvalidInputError, match="shape") as raised:
        request(handler, json.dumps({"instances": ROWS[:, :3].tolist()}).encode())
    assert http_error(raised.value).status == 400


# ---------------------------------------------------------------------------------------------------------------------
# code/requirements.txt


def _wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel (no dependencies), so pip never needs an index."""
    name, version = "demo_helper", "0.1"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: demo-helper\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = ""
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(text.encode())}\n"
    files[f"{name}-{version}.dist-info/RECORD"] = record + f"{name}-{version}.dist-info/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip (a subprocess inheriting the environment) never contacts an index and never changes this venv."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_DRY_RUN", "1")


def _package_with_requirements(package: PackageFactory, tmp_path: Path, requirements: str) -> tuple[Path, Manifest]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text('"""Needs the packages in requirements.txt."""\n')
    (code / "requirements.txt").write_text(requirements)
    if "wheels/" in requirements:
        _wheel(code / "wheels")
    package_dir = package(code=code)
    manifest = read_manifest(package_dir)
    assert manifest.code is not None and manifest.code.requirements == "code/requirements.txt"
    return package_dir, manifest


@pytest.mark.usefixtures("offline_pip")
def test_install_requirements_with_only_comments(package: PackageFactory, tmp_path: Path) -> None:
    package_dir, manifest = _package_with_requirements(package, tmp_path, "# everything is baked into the image\n\n")
    install_requirements(package_dir, manifest)


@pytest.mark.usefixtures("offline_pip")
def test_install_requirements_resolves_a_vendored_wheel_relative_to_code(
    package: PackageFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    package_dir, manifest = _package_with_requirements(package, tmp_path, "./wheels/demo_helper-0.1-py3-none-any.whl\n")
    with caplog.at_level(logging.INFO, logger="inference.user_code"):
        install_requirements(package_dir, manifest)
    assert "Would install demo-helper-0.1" in caplog.text


@pytest.mark.usefixtures("offline_pip")
def test_install_requirements_failure_is_a_load_error(package: PackageFactory, tmp_path: Path) -> None:
    package_dir, manifest = _package_with_requirements(package, tmp_path, "./vendor/does-not-exist\n")
    with pytest.raises(LoadError) as raised:
        install_requirements(package_dir, manifest)
    message = str(raised.value)
    assert message.startswith(f"pip install -r {package_dir / 'code' / 'requirements.txt'} failed (exit code 1): ")
    assert "does-not-exist" in message
    assert "bake the dependencies into the serving image" in message
    assert "\n" not in message


def test_install_requirements_without_requirements_does_nothing(package: PackageFactory) -> None:
    package_dir = package("transform_only")
    install_requirements(package_dir, read_manifest(package_dir))  # no requirements.txt: pip is not run


def test_install_requirements_missing_file(package: PackageFactory, tmp_path: Path) -> None:
    package_dir = package("transform_only")
    copy = tmp_path / "copy"
    shutil.copytree(package_dir, copy)
    manifest = read_manifest(copy)
    assert manifest.code is not None
    broken = manifest.model_copy(update={"code": manifest.code.model_copy(update={"requirements": "code/req.txt"})})
    with pytest.raises(LoadError, match=r"code/req\.txt does not exist"):
        install_requirements(copy, broken)


def test_an_accept_the_default_output_cannot_answer_is_406_before_the_model_runs(
    package: PackageFactory, write_code: Callable[..., Path]
) -> None:
    # predict_fn fails loudly: a 500 would mean the model ran before the 406 was decided.
    code = write_code(
        {
            "inference.py": """
            def predict_fn(data, model):
                raise RuntimeError("predict_fn ran")
            """
        }
    )
    handler = load(package(code=code))
    body = json.dumps({"inputs": {"x": ROWS.tolist()}}).encode()
    with pytest.raises(NotAcceptableError, match="supported: application/json"):
        request(handler, body, accept="text/html")
    with pytest.raises(ModelError, match="predict_fn"):
        request(handler, body, accept=JSON)  # an acceptable type reaches predict_fn
    # Without predict_fn the package model's outputs are known: two of them cannot be one .npy array.
    defaults = load(package(code=write_code({"inference.py": '"""No hooks."""\n'})))
    with pytest.raises(NotAcceptableError, match="holds a single array but the model has 2 outputs"):
        request(defaults, body, accept="application/x-npy")


def test_predict_batch_fn_contract_is_checked(package: PackageFactory, write_code: Callable[..., Path]) -> None:
    both = write_code(
        {"inference.py": "def predict_fn(data, model):\n    pass\n\ndef predict_batch_fn(inputs, model):\n    pass\n"}
    )
    with pytest.raises(LoadError, match="defines both predict_fn and predict_batch_fn; define one"):
        load(package(code=both))
    short = write_code({"inference.py": "def predict_batch_fn(inputs, model):\n    return []\n"})
    handler = load(package(code=short))
    with pytest.raises(ModelError, match=r"predict_batch_fn in inference.py returned 0 items for 1 inputs"):
        request(handler, json.dumps({"inputs": {"x": ROWS.tolist()}}).encode())


def test_verification_runs_predict_batch_fn_on_the_example(
    package: PackageFactory, write_code: Callable[..., Path]
) -> None:
    from inference.user_code import verify_user_code

    code = write_code(
        {"inference.py": "def predict_batch_fn(inputs, model):\n    return [model.predict(x) for x in inputs]\n"}
    )
    built = package(code=code)
    assert verify_user_code(built, read_manifest(built)) == ("predict_batch_fn",)
