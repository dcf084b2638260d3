"""A small simulator of GitHub Actions' scheduling, driven by the workflow files themselves.

It reads ``.github/workflows/*.yml`` and evaluates what GitHub evaluates before a step runs:
``on`` filters, ``needs``, ``if`` expressions, matrices, reusable-workflow calls (``uses: ./…``)
with their ``with`` inputs, ``concurrency`` groups (workflow and job level) and ``environment``.
What steps do is not simulated: a test finishes a job and gives its outputs.

The rules, from docs.github.com:

* Concurrency (actions/writing-workflows/choosing-what-your-workflow-does/control-the-concurrency-
  of-workflows-and-jobs): at most one running and one pending job or run per group; a newly queued
  one makes the pending one cancelled; group names are case-insensitive; ``cancel-in-progress``
  also cancels the running one.
* A job waiting for an environment's required reviewers (actions/managing-workflow-runs-and-
  deployments/managing-deployments/managing-environments-for-deployment) has already taken its
  concurrency group: GitHub evaluates concurrency when the job is queued, before the protection
  rules (observed behaviour, github.com/orgs/community/discussions/17401).
* ``needs``/``if`` (actions/writing-workflows/workflow-syntax-for-github-actions): a job whose
  ``if`` has no status function gets an implicit ``success()`` (every need succeeded); a job
  whose condition is false is skipped; ``needs.<id>.result`` is success, failure, cancelled or skipped.
* ``workflow_run`` (actions/writing-workflows/choosing-when-your-workflow-runs/events-that-trigger-
  workflows#workflow_run): ``workflows`` names the triggering workflow, ``branches`` filters its
  ``head_branch``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# --- expressions (docs.github.com: actions/writing-workflows/choosing-what-your-workflow-does/
# evaluate-expressions-in-workflows-and-actions; loose equality coerces mismatched types to numbers)

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||<=|>=|[!()\[\],.<>*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
STATUS_FUNCTIONS = ("success", "failure", "cancelled", "always")


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        pos = match.end()
        if match.group("str") is not None:
            out.append(("lit", match.group("str")[1:-1].replace("''", "'")))
        elif match.group("num") is not None:
            out.append(("lit", float(match.group("num"))))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            name = match.group("name")
            literal = {"true": True, "false": False, "null": None}
            out.append(("lit", literal[name]) if name in literal else ("name", name))
    return out


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "")


def _number(value: Any) -> float:
    """GitHub's coercion to a number for a comparison of different types (null 0, '' 0, 'x' NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip() or 0)
        except ValueError:
            return float("nan")
    return float("nan")


def _loose_eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings case-insensitively
    if type(a) is not type(b):
        return _number(a) == _number(b)  # so an unset variable (null) equals ''
    return bool(a == b)


class _Parser:
    def __init__(self, text: str, context: dict[str, Any], status: dict[str, bool]) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.context = context
        self.status = status

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.tokens[self.i]
        if value is not None and token != ("op", value):
            raise ValueError(f"expected {value!r}, got {token[1]!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.cmp()
            value = right if _truthy(value) else value
        return value

    def cmp(self) -> Any:
        value = self.unary()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            right = self.unary()
            value = _loose_eq(value, right) if op == "==" else not _loose_eq(value, right)
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        kind, value = self.take()
        if kind == "op" and value == "(":
            result = self.or_()
            self.take(")")
        elif kind == "lit":
            result = value
        elif kind == "name" and self.peek() == ("op", "("):
            self.take()
            args: list[Any] = []
            while self.peek() != ("op", ")"):
                args.append(self.or_())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            result = self.call(value, args)
        elif kind == "name":
            result = self.context.get(value)
        else:
            raise ValueError(f"unexpected {value!r}")
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, key = self.take()
                if key == "*":  # object filter: the property of every element
                    items = result.values() if isinstance(result, dict) else (result or [])
                    result = _Filtered(list(items))
                else:
                    result = _get(result, str(key))
            else:
                key = self.or_()
                self.take("]")
                result = _get(result, str(key))
        return result

    def call(self, name: str, args: list[Any]) -> Any:
        if name in STATUS_FUNCTIONS:
            return self.status[name]
        if name == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_loose_eq(item, needle) for item in haystack)
            return str(needle).lower() in str(haystack or "").lower()
        if name == "format":
            template, *rest = args
            return re.sub(r"\{(\d+)\}", lambda m: _str(rest[int(m.group(1))]), template)
        if name == "fromJSON":
            return json.loads(args[0])
        if name == "startsWith":
            return str(args[0]).lower().startswith(str(args[1]).lower())
        raise ValueError(f"the simulator does not know the function {name}()")


class _Filtered(list[Any]):
    """The result of ``x.*``: a further ``.prop`` maps over the elements."""


def _get(value: Any, key: str) -> Any:
    if isinstance(value, _Filtered):
        return [_get(item, key) for item in value]
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        return lowered.get(key.lower())
    return None


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def evaluate(text: str, context: dict[str, Any], status: dict[str, bool] | None = None) -> Any:
    """Evaluate one expression (without ``${{ }}``)."""
    return _Parser(text, context, status or {}).parse()


def interpolate(value: Any, context: dict[str, Any]) -> Any:
    """A workflow value with its ``${{ }}`` evaluated; a value that is one whole expression keeps its type."""
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", value, re.S)
    if whole:
        return evaluate(whole.group(1), context)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _str(evaluate(m.group(1), context)), value, flags=re.S)


def condition(text: Any, context: dict[str, Any], status: dict[str, bool]) -> bool:
    """A job's ``if``: implicit ``success() &&`` unless it calls a status function."""
    if text is None:
        return status["success"]
    source = str(text).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", source, re.S)
    if whole:
        source = whole.group(1)
    if not any(re.search(rf"\b{name}\s*\(", source) for name in STATUS_FUNCTIONS):
        source = f"success() && ({source})"
    return _truthy(evaluate(source, context, status))


# --- steps


def step_name(step: dict[str, Any]) -> str:
    """What GitHub shows for a step: its ``name``, else its ``uses`` or ``run``."""
    return str(step.get("name") or step.get("uses") or step.get("run"))


def run_steps(
    steps: list[dict[str, Any]], context: dict[str, Any], fail: set[str] | None = None
) -> list[tuple[str, str]]:
    """Each step's outcome, in order, when the steps named in ``fail`` fail and every other step that runs succeeds.

    docs.github.com (actions/writing-workflows/choosing-what-your-workflow-does/evaluate-expressions-
    in-workflows-and-actions, "Status check functions"): a step's ``if`` without a status function
    is ``success() && …``; ``success()`` is true while no previous step has failed, ``failure()`` once
    one has; a step whose condition is false is ``skipped``. ``steps.<id>.outcome`` is ``success``,
    ``failure`` or ``skipped`` (contexts reference, ``steps`` context).
    """
    fail = fail or set()
    results: list[tuple[str, str]] = []
    outcomes: dict[str, Any] = {}
    failed = False
    for step in steps:
        status = {"success": not failed, "failure": failed, "cancelled": False, "always": True}
        name = step_name(step)
        if condition(step.get("if"), {**context, "steps": outcomes}, status):
            outcome = "failure" if name in fail else "success"
            failed = failed or (outcome == "failure" and not step.get("continue-on-error"))
        else:
            outcome = "skipped"
        if "id" in step:
            outcomes[str(step["id"])] = {"outcome": outcome, "conclusion": outcome, "outputs": {}}
        results.append((name, outcome))
    return results


# --- scheduling


@dataclass
class Job:
    """One job instance (a matrix leg; a reusable workflow's job inside its caller)."""

    run: Run
    key: str  # the caller's job id (plus the matrix values)
    job_id: str  # the caller's job id, what ``needs`` names
    definition: dict[str, Any]
    context: dict[str, Any]
    state: str = "blocked"  # blocked, pending, waiting (for reviewers), running, success, failure, cancelled, skipped
    group: str | None = None
    environment: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """One workflow run."""

    workflow: str
    data: dict[str, Any]
    github: dict[str, Any]
    jobs: dict[str, list[Job]] = field(default_factory=dict)  # caller job id -> instances
    state: str = "queued"


class Simulator:
    """Runs, jobs and concurrency groups across workflows of one repository."""

    def __init__(self, root: Path, *, variables: dict[str, str], protected: set[str], repository: str) -> None:
        self.root = root
        self.vars = variables
        self.protected = protected  # environments with required reviewers
        self.repository = repository
        self.runs: list[Run] = []
        self.holders: dict[str, Job | Run] = {}
        self.pending: dict[str, Job | Run] = {}

    # workflows

    def load(self, name: str) -> dict[str, Any]:
        data = yaml.safe_load((self.root / ".github" / "workflows" / name).read_text())
        data["on"] = data.pop(True, data.get("on"))  # PyYAML reads the key `on` as True
        return dict(data)

    def trigger(self, workflow: str, event: str, payload: dict[str, Any], *, branch: str = "main") -> Run | None:
        """Start ``workflow`` for ``event`` if its ``on`` filters accept it; ``None`` if not."""
        data = self.load(workflow)
        on = data["on"]
        triggers = on if isinstance(on, dict) else {name: None for name in ([on] if isinstance(on, str) else on)}
        if event not in triggers:
            return None
        spec = triggers[event] or {}
        if event == "workflow_run":
            if payload["workflow_run"]["name"] not in spec.get("workflows", []):
                return None
            if "branches" in spec and payload["workflow_run"]["head_branch"] not in spec["branches"]:
                return None
            if "types" in spec and payload.get("action", "completed") not in spec["types"]:
                return None
        elif event == "push" and "branches" in spec and branch not in spec["branches"]:
            return None
        github = {"event_name": event, "event": payload, "repository": self.repository, "run_id": len(self.runs) + 1}
        github["sha"] = payload.get("after", "")
        github["ref"] = payload.get("ref", f"refs/heads/{branch}")
        run = Run(workflow, data, github)
        self.runs.append(run)
        concurrency = data.get("concurrency")
        if concurrency is not None:
            self._queue(run, concurrency, {"github": github, "vars": self.vars, "inputs": {}})
        else:
            run.state = "running"
            self._start(run)
        return run

    def _start(self, run: Run) -> None:
        # Instances are made when a job's needs are done (a matrix may read their outputs).
        for job_id in run.data["jobs"]:
            run.jobs[job_id] = []
        self._advance()

    # jobs

    def job(self, run: Run, key: str) -> Job:
        """The job instance ``key`` (the caller's job id, or ``id (matrix value)`` for a matrix leg)."""
        for jobs in run.jobs.values():
            for job in jobs:
                if job.key == key:
                    return job
        raise KeyError(f"{run.workflow} has no job instance {key!r} (yet); it has {self.states(run)}")

    def states(self, run: Run) -> dict[str, str]:
        """Every job of ``run`` and its state; a job not yet created is ``blocked``."""
        out: dict[str, str] = {}
        for job_id, jobs in run.jobs.items():
            if not jobs:
                out[job_id] = "blocked" if run.state != "cancelled" else "cancelled"
            for job in jobs:
                out[job.key] = job.state
        return out

    def approve(self, run: Run, key: str) -> None:
        """A reviewer approves the job's environment."""
        job = self.job(run, key)
        assert job.state == "waiting", f"{key} is {job.state}, not waiting for approval"
        job.state = "running"

    def reject(self, run: Run, key: str) -> None:
        """A reviewer rejects the job's environment: the job fails (docs: reviewing deployments)."""
        job = self.job(run, key)
        assert job.state == "waiting", f"{key} is {job.state}, not waiting for approval"
        job.state = "failure"
        self._release(job)
        self._advance()

    def finish(self, run: Run, key: str, result: str = "success", outputs: dict[str, str] | None = None) -> None:
        """The job's steps end with ``result``; ``outputs`` are its job outputs."""
        job = self.job(run, key)
        assert job.state == "running", f"{key} is {job.state}, not running"
        job.state = result
        job.outputs = outputs or {}
        self._release(job)
        self._advance()

    def _result(self, run: Run, job_id: str) -> str | None:
        """``needs.<id>.result``, or ``None`` while the job has not ended."""
        jobs = run.jobs.get(job_id)
        if run.state == "cancelled" and not jobs:
            return "cancelled"
        if not jobs or any(job.state in ("blocked", "pending", "waiting", "running") for job in jobs):
            return None
        results = {job.state for job in jobs}
        for result in ("failure", "cancelled", "success"):
            if result in results:
                return result
        return "skipped"

    def _advance(self) -> None:
        changed = True
        while changed:
            changed = False
            for run in self.runs:
                if run.state != "running":
                    continue
                for job_id, definition in run.data["jobs"].items():
                    if run.jobs[job_id]:
                        continue
                    needs = definition.get("needs", [])
                    needs = [needs] if isinstance(needs, str) else list(needs)
                    results = {need: self._result(run, need) for need in needs}
                    if any(result is None for result in results.values()):
                        continue
                    self._create(run, job_id, definition, results)
                    changed = True
                ended = all(self._result(run, job_id) is not None for job_id in run.data["jobs"])
                if ended:  # a finished run frees its workflow-level group
                    run.state = "completed"
                    self._release(run)
                    changed = True

    def _create(self, run: Run, job_id: str, definition: dict[str, Any], results: dict[str, str | None]) -> None:
        needs_ctx = {need: {"result": result, "outputs": self._outputs(run, need)} for need, result in results.items()}
        context: dict[str, Any] = {"github": run.github, "vars": self.vars, "needs": needs_ctx, "inputs": {}}
        status = {
            "success": all(result == "success" for result in results.values()),
            "failure": any(result == "failure" for result in results.values()),
            "cancelled": run.state == "cancelled",
            "always": True,
        }
        if not condition(definition.get("if"), context, status):
            run.jobs[job_id] = [Job(run, job_id, job_id, definition, context, state="skipped")]
            return
        legs: list[dict[str, Any]] = [{}]
        matrix = (definition.get("strategy") or {}).get("matrix")
        if matrix is not None:
            include = interpolate(matrix.get("include"), context) if isinstance(matrix, dict) else None
            if not isinstance(include, list) or set(matrix) != {"include"}:
                raise NotImplementedError("the simulator expands `matrix: {include: [...]}` only")
            legs = include
        for leg in legs:
            key = job_id if not leg else f"{job_id} ({', '.join(_str(v) for v in leg.values())})"
            leg_context = {**context, "matrix": leg}
            job = Job(run, key, job_id, definition, leg_context)
            run.jobs.setdefault(job_id, []).append(job)
            self._enqueue(job)

    def _outputs(self, run: Run, job_id: str) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for job in run.jobs.get(job_id, []):
            outputs.update(job.outputs)
        return outputs

    def _enqueue(self, job: Job) -> None:
        definition = job.definition
        context = job.context
        uses = definition.get("uses")
        if isinstance(uses, str):
            if not uses.startswith("./.github/workflows/"):
                raise NotImplementedError("only local reusable workflows are simulated")
            callee = self.load(Path(uses).name)
            if "workflow_call" not in (callee["on"] or {}):
                raise ValueError(f"{uses} is not callable: its `on` has no workflow_call")
            declared = callee["on"]["workflow_call"].get("inputs", {})
            given = {name: interpolate(value, context) for name, value in (definition.get("with") or {}).items()}
            unknown = set(given) - set(declared)
            if unknown:
                raise ValueError(f"{job.key} passes inputs {sorted(unknown)} that {uses} does not declare")
            inputs = {name: given.get(name, spec.get("default")) for name, spec in declared.items()}
            (inner,) = callee["jobs"].values()  # pulumi-stack.yml has one job; more would need their own needs
            job.definition = {**inner, "caller": definition}
            context = job.context = {**context, "inputs": inputs}
            definition = job.definition
        environment = interpolate(definition.get("environment"), context)
        if isinstance(environment, dict):
            environment = interpolate(environment.get("name"), context)
        job.environment = environment or None
        concurrency = definition.get("concurrency") or (definition.get("caller") or {}).get("concurrency")
        if concurrency is None:
            self._acquire(job)
        else:
            self._queue(job, concurrency, context)

    def _queue(self, item: Job | Run, concurrency: Any, context: dict[str, Any]) -> None:
        spec = concurrency if isinstance(concurrency, dict) else {"group": concurrency}
        group = _str(interpolate(spec["group"], context)).lower()  # group names are case-insensitive
        cancel = _truthy(interpolate(spec.get("cancel-in-progress", False), context))
        item_group = group
        if isinstance(item, Job):
            item.group = item_group
        else:
            item.github["concurrency_group"] = item_group
        holder = self.holders.get(group)
        if holder is not None and cancel:
            self._cancel(holder)
            holder = None
        if holder is None:
            self.holders[group] = item
            self._acquire(item)
            return
        previous = self.pending.get(group)
        if previous is not None:
            self._cancel(previous)
        self.pending[group] = item
        item.state = "pending"

    def _acquire(self, item: Job | Run) -> None:
        if isinstance(item, Run):
            item.state = "running"
            self._start(item)
            return
        item.state = "waiting" if item.environment in self.protected else "running"

    def _cancel(self, item: Job | Run) -> None:
        item.state = "cancelled"
        self._release(item)
        if isinstance(item, Run):
            for jobs in item.jobs.values():
                for job in jobs:
                    if job.state in ("blocked", "pending", "waiting", "running"):
                        self._cancel(job)
        self._advance()

    def _release(self, item: Job | Run) -> None:
        group = item.group if isinstance(item, Job) else item.github.get("concurrency_group")
        if group is None:
            return
        if self.pending.get(group) is item:
            del self.pending[group]
            return
        if self.holders.get(group) is item:
            del self.holders[group]
            successor = self.pending.pop(group, None)
            if successor is not None:
                self.holders[group] = successor
                self._acquire(successor)
