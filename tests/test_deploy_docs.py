"""docs/deploy.md: every command it names exists, with the options it uses."""

from __future__ import annotations

import functools
import re
import shlex

from helpers import cli_env, run_cli
from test_deploy_support import ROOT

DOC = ROOT / "docs/deploy.md"


def _shell_commands() -> list[str]:
    """Commands in the doc's ```bash blocks, continuation lines joined."""
    text = DOC.read_text(encoding="utf-8")
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        out += [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    return out


def _medasr_commands() -> list[list[str]]:
    cmds = []
    for line in _shell_commands():
        for m in re.finditer(r"(?:^|[|;&]\s*|--no-python\s+)medasr\s+([^|;&]*)", line):
            cmds.append(shlex.split(m.group(1), comments=True))
    return cmds


@functools.cache
def _help(*path: str) -> str:
    env = cli_env(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    proc = run_cli(*path, "--help", env=env, timeout=120)
    assert proc.returncode == 0, f"medasr {' '.join(path)} --help failed: {proc.stderr}"
    return proc.stdout


def _subcommands(help_text: str) -> set[str]:
    section = help_text.split("Commands", 1)[1] if "Commands" in help_text else ""
    return set(re.findall(r"^[│|]\s+([a-z][a-z-]*)\s", section, re.M))


def test_every_medasr_command_in_the_doc_exists_with_its_options() -> None:
    cmds = _medasr_commands()
    assert len(cmds) >= 8, "docs/deploy.md should show the medasr commands it relies on"
    seen = set()
    for argv in cmds:
        path: list[str] = []
        while argv and not argv[0].startswith("-") and argv[0] in _subcommands(_help(*path)):
            path.append(argv.pop(0))
        assert path, f"medasr {' '.join(argv)}: no such subcommand"
        text = _help(*path)
        for opt in (a.split("=")[0] for a in argv if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
                f"medasr {' '.join(path)}: no option {opt}"
            )
        seen.add(" ".join(path))
    assert {"train", "eval", "synth", "script", "manifest build", "lexicon"} <= seen


def test_paths_named_in_the_doc_exist() -> None:
    commands = " ".join(_shell_commands())
    kustomize = re.findall(r"(?:apply|kustomize) -k (\S+)|kubectl kustomize (\S+)", commands)
    dirs = {a or b for a, b in kustomize}
    assert dirs
    for d in dirs:
        assert (ROOT / d / "kustomization.yaml").is_file(), d
    for f in re.findall(r"docker build -f (\S+)", commands):
        assert (ROOT / f).is_file(), f
    for f in re.findall(
        r"\b((?:deploy|scripts|docs)/[\w./-]+\.(?:yaml|sh|txt|md))", DOC.read_text()
    ):
        assert (ROOT / f).exists(), f
