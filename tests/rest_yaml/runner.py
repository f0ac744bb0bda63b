"""A runner for Elasticsearch's YAML REST test format, driving a server through the official client.

The format is described in ``shared/es-rest-tests/RUNNER_NOTES.md`` (a summary of Elasticsearch's
``rest-api-spec/test/README.asciidoc``). This is our own implementation: it loads a file into cases,
decides whether a case applies to the server's version and features (``skip``/``requires``), runs
``setup`` + the case + ``teardown`` and then wipes the cluster, and raises :class:`StepFailed` on the
first failing step.

    python -m tests.rest_yaml.runner [ES_URL]   # prints "passed X of Y cases ..."
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Runner features we implement (skip.features / requires.test_runner_features). `capabilities` is
# deliberately absent: those cases are reported as skipped.
RUNNER_FEATURES = frozenset({"close_to", "headers", "allowed_warnings", "allowed_warnings_regex",
                             "default_shards", "contains", "capabilities"})

PARAM_RENAMES = {"from": "from_", "_source": "source", "_source_includes": "source_includes",
                 "_source_excludes": "source_excludes", "_source_exclude_vectors": "source_exclude_vectors"}

CATCH_STATUS = {"bad_request": 400, "unauthorized": 401, "forbidden": 403, "missing": 404,
                "request_timeout": 408, "conflict": 409, "unavailable": 503}

_UNDEFINED = object()
# APIs whose body holds request options (not a document), where body values override parameters.
_BODY_IS_OPTIONS = frozenset({"scroll", "clear_scroll", "search", "count", "update_by_query", "delete_by_query",
                              "close_point_in_time"})


class StepFailed(AssertionError):
    """A step of a case failed; the message says which and why."""


class CaseSkipped(Exception):
    """The case does not apply to this server (version, features, runner features)."""

    def __init__(self, reason: str, *, version: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version = version  # skipped because of version requirements (not counted in Y)


@dataclass
class Case:
    file: str  # path relative to the tests folder, e.g. "search/350_point_in_time.yml"
    name: str
    steps: list[dict[str, Any]]
    setup: list[dict[str, Any]] = field(default_factory=list)
    teardown: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


#: More of Elasticsearch's YAML REST tests, fetched by the user (``EXTRA_TESTS.md`` lists them with their
#: commits). Third-party files are not committed here; set ``ES_REST_TESTS_EXTRA`` to their folder.
ADDED_ROOT = Path(os.environ.get("ES_REST_TESTS_EXTRA") or "/nonexistent/es-rest-tests-extra")


def shared_root() -> Path:
    """``shared/es-rest-tests`` beside the checkout, or beside a folder above it (git worktrees)."""
    here = Path(__file__).resolve().parents[2]
    for folder in [here, *here.parents]:
        candidate = folder.parent / "shared" / "es-rest-tests"
        if candidate.is_dir():
            return candidate
    return here.parent / "shared" / "es-rest-tests"


def yaml_roots() -> list[Path]:
    """The folders of YAML test files that exist: the shared subset, then the added files."""
    return [root for root in (shared_root(), ADDED_ROOT) if root.is_dir()]


def load_cases(root: Path | list[Path]) -> list[Case]:
    """Every test case of every ``*.yml`` under ``root`` (or each of several roots), in file order."""
    if isinstance(root, list):
        return [case for one in root for case in load_cases(one)]
    cases: list[Case] = []
    for path in sorted(root.rglob("*.yml")):
        rel = path.relative_to(root).as_posix()
        with path.open(encoding="utf-8") as fh:
            documents = [d for d in yaml.safe_load_all(fh) if d]
        setup: list[dict[str, Any]] = []
        teardown: list[dict[str, Any]] = []
        tests: list[tuple[str, list[dict[str, Any]]]] = []
        for doc in documents:
            for key, steps in doc.items():
                if key == "setup":
                    setup = steps or []
                elif key == "teardown":
                    teardown = steps or []
                else:
                    tests.append((str(key), steps or []))
        for name, steps in tests:
            cases.append(Case(rel, name, steps, setup, teardown))
    return cases


# ---------------------------------------------------------------------------------------------
# Selection: skip / requires
# ---------------------------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:3]) + (0,) * (3 - len(parts[:3]))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def has_feature(feature: str, version: str, named: frozenset[str]) -> bool:
    m = re.fullmatch(r"gte_v(\d+\.\d+\.\d+)", feature)
    if m:
        return _version_tuple(version) >= _version_tuple(m.group(1))
    return feature in named


def _in_range(version: str, ranges: str) -> bool:
    if ranges.strip() == "all":
        return True
    v = _version_tuple(version)
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        lo_t = _version_tuple(lo) if lo.strip() else (0, 0, 0)
        hi_t = _version_tuple(hi) if hi.strip() else (10**6, 0, 0)
        if lo_t <= v <= hi_t:
            return True
    return False


def check_selection(case: Case, version: str, named: frozenset[str], client: Any = None) -> None:
    """Raise :class:`CaseSkipped` if the case's skip/requires sections exclude it."""
    for step in case.setup + case.steps + case.teardown:
        for kind in ("skip", "requires"):
            if kind not in step:
                continue
            spec = step[kind] or {}
            features = _as_list(spec.get("features")) + _as_list(spec.get("test_runner_features"))
            missing = [f for f in features if f not in RUNNER_FEATURES]
            if missing:
                raise CaseSkipped(f"runner feature(s) not supported: {', '.join(missing)}")
            if kind == "skip":
                if "version" in spec and _in_range(version, str(spec["version"])):
                    raise CaseSkipped(f"skip.version [{spec['version']}] matches {version}", version=True)
                for feature in _as_list(spec.get("cluster_features")):
                    if has_feature(feature, version, named):
                        raise CaseSkipped(f"skip.cluster_features: [{feature}] present",
                                          version=feature.startswith("gte_v"))
                for issue in _as_list(spec.get("known_issues")):
                    if has_feature(issue["cluster_feature"], version, named) and \
                            not has_feature(issue["fixed_by"], version, named):
                        raise CaseSkipped("known issue")
                if spec.get("awaits_fix"):
                    raise CaseSkipped(f"awaits fix: {spec['awaits_fix']}")
            else:
                for feature in _as_list(spec.get("cluster_features")):
                    if not has_feature(feature, version, named):
                        raise CaseSkipped(f"requires cluster feature [{feature}]",
                                          version=feature.startswith("gte_v"))
                for cap in _as_list(spec.get("capabilities")):
                    if not has_capabilities(client, cap):
                        raise CaseSkipped(f"cluster lacks capabilities {cap.get('capabilities')} for "
                                          f"{cap.get('method')} {cap.get('path')}")


def has_capabilities(client: Any, spec: dict[str, Any]) -> bool:
    """Ask the cluster (``GET /_capabilities``), as Elasticsearch's Java runner does."""
    if client is None:
        return False
    params = {"method": spec.get("method", "GET"), "path": spec.get("path", "/"),
              "capabilities": ",".join(_as_list(spec.get("capabilities")))}
    if spec.get("parameters"):
        params["parameters"] = ",".join(_as_list(spec["parameters"]))
    try:
        response = client.options(ignore_status=(400, 404)).perform_request(
            "GET", "/_capabilities", params=params, headers={"accept": "application/json"})
    except Exception:  # noqa: BLE001 - an old node without the API: capability absent
        return False
    body = response.body
    return isinstance(body, dict) and body.get("supported") is True


def applies_by_version(case: Case, version: str) -> bool:
    """Whether only the version-based conditions (skip.version, gte_v* features) let the case run."""
    for step in case.setup + case.steps + case.teardown:
        for kind in ("skip", "requires"):
            spec = step.get(kind) if isinstance(step, dict) else None
            if not spec:
                continue
            if kind == "skip" and "version" in spec and _in_range(version, str(spec["version"])):
                return False
            for feature in _as_list(spec.get("cluster_features")):
                if feature.startswith("gte_v"):
                    present = has_feature(feature, version, frozenset())
                    if (kind == "skip") == present:
                        return False
    return True


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


class Runner:
    """Runs cases against one server through an ``elasticsearch.Elasticsearch`` client."""

    def __init__(self, client: Any, *, version: str | None = None, features: frozenset[str] = frozenset(),
                 wipe: Any = None) -> None:
        self.client = client
        self.version = version or client.info()["version"]["number"]
        self.features = features
        self._wipe = wipe
        self.stash: dict[str, Any] = {}
        self.response: Any = None

    def run(self, case: Case) -> None:
        """Run one case; raises CaseSkipped or StepFailed."""
        check_selection(case, self.version, self.features, self.client)
        self.stash = {}
        self.response = None
        try:
            for section, steps in (("setup", case.setup), ("test", case.steps)):
                for number, step in enumerate(steps):
                    try:
                        self.step(step)
                    except StepFailed as exc:
                        raise StepFailed(f"{section} step {number} {_short(step)}: {exc}") from None
            for step in case.teardown:
                self.step(step)
        finally:
            self.wipe()

    def wipe(self) -> None:
        if self._wipe is not None:
            self._wipe()
            return
        client = self.client.options(ignore_status=(400, 404))
        # by name: Elasticsearch refuses a wildcard delete while action.destructive_requires_name holds
        names = [n for n in client.indices.get(index="*", expand_wildcards="all").body or {} if not n.startswith(".")]
        if names:
            client.indices.delete(index=",".join(names))
        client.indices.delete_index_template(name="*")
        client.cluster.delete_component_template(name="*")
        client.clear_scroll(scroll_id="_all")

    # -- steps ------------------------------------------------------------------------------------

    def step(self, step: dict[str, Any]) -> None:
        (kind, spec), = step.items()
        if kind in ("skip", "requires"):
            return
        if kind == "do":
            return self.do(spec)
        if kind == "set":
            for path, name in spec.items():
                self.stash[name] = self.resolve(path)
            return
        handler = getattr(self, f"assert_{kind}", None)
        if handler is None:
            raise StepFailed(f"unsupported step [{kind}]")
        for path, expected in (spec.items() if isinstance(spec, dict) else [(spec, None)]):
            handler(path, expected)

    def do(self, spec: dict[str, Any]) -> None:
        spec = dict(spec)
        catch = spec.pop("catch", None)
        headers = spec.pop("headers", None)
        for key in ("warnings", "warnings_regex", "allowed_warnings", "allowed_warnings_regex", "node_selector"):
            spec.pop(key, None)
        if len(spec) != 1:
            raise StepFailed(f"do needs exactly one API, got {list(spec)}")
        (api, params), = spec.items()
        params = self.substitute(dict(params or {}))
        client = self.client
        options: dict[str, Any] = {}
        if headers:
            options["headers"] = {k: str(v) for k, v in headers.items()}
        if "ignore" in params:
            options["ignore_status"] = tuple(int(s) for s in _as_list(params.pop("ignore")))
        if options:
            client = client.options(**options)
        target = client
        for part in api.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise StepFailed(f"API [{api}] is not available in this client")
        kwargs = {PARAM_RENAMES.get(k, k): v for k, v in params.items()}
        body = kwargs.get("body")
        if isinstance(body, dict) and api in _BODY_IS_OPTIONS:
            # Body values override query-string ones in Elasticsearch; the client refuses both at once.
            for key in list(kwargs):
                if key != "body" and (key in body or key.rstrip("_") in body):
                    kwargs.pop(key)
        from elasticsearch import ApiError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # body + params mix, as the YAML does
                result = target(**kwargs)
        except ApiError as exc:
            body = exc.body
            self.response = body if body is not None else {"status": exc.meta.status}
            if isinstance(self.response, dict) and "status" not in self.response:
                self.response = {**self.response, "status": exc.meta.status}
            if catch is None:
                raise StepFailed(f"{api} failed: {exc.meta.status} {_trim(body)}") from None
            self._check_catch(catch, exc.meta.status, body)
            return
        except (TypeError, ValueError) as exc:
            if catch == "param":
                return
            raise StepFailed(f"{api} client error: {exc}") from None
        if catch is not None:
            status = getattr(getattr(result, "meta", None), "status", 200)
            if catch in CATCH_STATUS and status == CATCH_STATUS[catch]:
                self.response = result.body
                return
            raise StepFailed(f"{api} succeeded but catch [{catch}] was expected: {_trim(result.body)}")
        body = result.body
        if isinstance(body, bool):  # HEAD APIs
            self.response = body
        else:
            self.response = body
        self.stash["body"] = body

    def _check_catch(self, catch: str, status: int, body: Any) -> None:
        if catch in CATCH_STATUS:
            if status != CATCH_STATUS[catch]:
                raise StepFailed(f"expected [{catch}] ({CATCH_STATUS[catch]}), got {status}: {_trim(body)}")
            return
        if catch == "request":
            if status < 400 or status in CATCH_STATUS.values():
                raise StepFailed(f"expected [request] error, got {status}")
            return
        if catch.startswith("/") and catch.endswith("/"):
            text = json.dumps(body) if not isinstance(body, str) else body
            pattern = catch[1:-1]
            if not (re.search(pattern, text, re.VERBOSE) or re.search(pattern, text)
                    or re.search(pattern, text.replace('\\"', '"'))):
                raise StepFailed(f"error {status} does not match {catch}: {_trim(body)}")
            return
        raise StepFailed(f"unknown catch [{catch}]")

    # -- stash and paths --------------------------------------------------------------------------

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("$") and value[1:] in self.stash:
                return self.stash[value[1:]]
            if "${" in value:
                return re.sub(r"\$\{(\w+)\}", lambda m: str(self.stash.get(m.group(1), m.group(0))), value)
            return value
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, dict):
            return {self.substitute(k): self.substitute(v) for k, v in value.items()}
        return value

    def resolve(self, path: str) -> Any:
        if path in ("", "$body"):
            return self.response
        node: Any = self.response
        for raw in re.split(r"(?<!\\)\.", path):
            key = self.substitute(raw.replace("\\.", "."))
            if isinstance(node, list):
                try:
                    node = node[int(key)]
                except (ValueError, IndexError):
                    return _UNDEFINED
            elif isinstance(node, dict):
                if key in node:
                    node = node[key]
                else:
                    return _UNDEFINED
            else:
                return _UNDEFINED
        return node

    # -- assertions -------------------------------------------------------------------------------

    def assert_match(self, path: str, expected: Any) -> None:
        actual = self.resolve(path)
        expected = self.substitute(expected)
        if isinstance(expected, str) and len(expected) > 1 and expected.startswith("/") and expected.endswith("/"):
            if actual is _UNDEFINED or not re.search(expected[1:-1], _text(actual), re.VERBOSE):
                raise StepFailed(f"match [{path}]: {_trim(_show(actual))} does not match {expected}")
            return
        if not _equal(actual, expected):
            raise StepFailed(f"match [{path}]: expected {_trim(expected)}, got {_trim(_show(actual))}")

    def assert_is_true(self, path: str, _: Any = None) -> None:
        value = self.resolve(path)
        if value is _UNDEFINED or value in (None, False, 0, "", "false") and not isinstance(value, (dict, list)):
            raise StepFailed(f"is_true [{path}]: got {_trim(_show(value))}")

    def assert_is_false(self, path: str, _: Any = None) -> None:
        value = self.resolve(path)
        if not (value is _UNDEFINED or (not isinstance(value, (dict, list)) and value in (None, False, 0, "",
                                                                                        "false"))):
            raise StepFailed(f"is_false [{path}]: got {_trim(_show(value))}")

    def assert_exists(self, path: str, _: Any = None) -> None:
        if self.resolve(path) is _UNDEFINED:
            raise StepFailed(f"exists [{path}]: missing")

    def assert_length(self, path: str, expected: Any) -> None:
        value = self.resolve(path)
        if value is _UNDEFINED or not hasattr(value, "__len__") or len(value) != int(self.substitute(expected)):
            raise StepFailed(f"length [{path}]: expected {expected}, got "
                             f"{len(value) if hasattr(value, '__len__') else _show(value)}")

    def _compare(self, path: str, expected: Any, op: str) -> None:
        value = self.resolve(path)
        expected = self.substitute(expected)
        try:
            ok = {"gt": value > expected, "gte": value >= expected, "lt": value < expected,
                  "lte": value <= expected}[op]
        except TypeError:
            ok = False
        if not ok:
            raise StepFailed(f"{op} [{path}]: {_show(value)} vs {expected}")

    def assert_gt(self, path: str, expected: Any) -> None:
        self._compare(path, expected, "gt")

    def assert_gte(self, path: str, expected: Any) -> None:
        self._compare(path, expected, "gte")

    def assert_lt(self, path: str, expected: Any) -> None:
        self._compare(path, expected, "lt")

    def assert_lte(self, path: str, expected: Any) -> None:
        self._compare(path, expected, "lte")

    def assert_close_to(self, path: str, expected: Any) -> None:
        value = self.resolve(path)
        target = self.substitute(expected["value"])
        error = expected["error"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value - target) > error:
            raise StepFailed(f"close_to [{path}]: {_show(value)} not within {error} of {target}")

    def assert_contains(self, path: str, expected: Any) -> None:
        value = self.resolve(path)
        expected = self.substitute(expected)
        if isinstance(value, str) and isinstance(expected, str) and expected in value:
            return
        if isinstance(value, list) and any(
                _equal(v, expected) or (isinstance(v, dict) and isinstance(expected, dict)
                                        and all(_equal(v.get(k, _UNDEFINED), e) for k, e in expected.items()))
                for v in value):
            return
        raise StepFailed(f"contains [{path}]: {expected!r} not in {_trim(_show(value))}")


def _equal(actual: Any, expected: Any) -> bool:
    if actual is _UNDEFINED:
        return expected is None  # as Elasticsearch's runner: a missing value matches null
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, float) and isinstance(actual, float):
            return math.isclose(actual, expected, rel_tol=1e-6) or actual == expected
        return actual == expected
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            _equal(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _equal(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, str) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return expected == str(actual)
    return actual == expected


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _show(value: Any) -> Any:
    return "<undefined>" if value is _UNDEFINED else value


def _trim(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _short(step: dict[str, Any]) -> str:
    return _trim(step, 160)


# ---------------------------------------------------------------------------------------------
# Command line: the summary line
# ---------------------------------------------------------------------------------------------


def run_all(client: Any, root: Path | list[Path], *, features: frozenset[str], wipe: Any = None,
            verbose: bool = False) -> dict[str, Any]:
    """Run every case; return counts (also per root) and per-case outcomes."""
    runner = Runner(client, features=features, wipe=wipe)
    outcomes: dict[str, str] = {}
    applicable = passed = 0
    by_root: dict[str, list[int]] = {}
    for one in root if isinstance(root, list) else [root]:
        counts = by_root.setdefault(str(one), [0, 0])
        for case in load_cases(one):
            ok, in_scope = _run_counted(runner, case, outcomes, verbose)
            counts[0] += ok
            counts[1] += in_scope
            passed += ok
            applicable += in_scope
    return {"version": runner.version, "applicable": applicable, "passed": passed, "outcomes": outcomes,
            "by_root": by_root}


def _run_counted(runner: Runner, case: Case, outcomes: dict[str, str], verbose: bool) -> tuple[int, int]:
    """Run one case, record its outcome; (passed and applicable, applicable) as 0/1."""
    in_scope = applies_by_version(case, runner.version)
    try:
        runner.run(case)
    except CaseSkipped as exc:
        outcomes[case.id] = f"skipped: {exc.reason}"
    except Exception as exc:  # noqa: BLE001 - every failure is an outcome
        outcomes[case.id] = f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    else:
        outcomes[case.id] = "passed"
    if verbose:
        print(f"{outcomes[case.id][:150]:150s} {case.id}", file=sys.stderr)
    passed = int(in_scope and outcomes[case.id] == "passed")
    return passed, int(in_scope)


def summary_line(result: dict[str, Any]) -> str:
    line = (f"passed {result['passed']} of {result['applicable']} cases whose version requirements "
            f"{result['version']} meets")
    parts = [f"{'added' if Path(root) == ADDED_ROOT else 'shared'}: {ok} of {n}"
             for root, (ok, n) in result.get("by_root", {}).items()]
    return line + (f" ({'; '.join(parts)})" if len(parts) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    from elasticsearch import Elasticsearch

    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv
    argv = [a for a in argv if a != "-v"]
    root = yaml_roots()
    if not root:
        print(f"REST tests not found at {shared_root()} or {ADDED_ROOT}", file=sys.stderr)
        return 2
    url = argv[0] if argv else os.environ.get("ES_URL")
    from es_semantic.testing.server import CLUSTER_FEATURES

    if url:
        client = Elasticsearch(url, request_timeout=60)
        result = run_all(client, root, features=frozenset(CLUSTER_FEATURES), verbose=verbose)
    else:
        from es_semantic.testing import start_server

        with start_server() as server:
            client = Elasticsearch(server.url, request_timeout=60)
            result = run_all(client, root, features=frozenset(CLUSTER_FEATURES), wipe=server.reset,
                             verbose=verbose)
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
