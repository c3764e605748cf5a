"""Every code sample in docs/*.md is checked.

- ```python blocks must compile, and every taskchan name they use must exist:
  each ``import taskchan...`` / ``from taskchan... import name``, each
  attribute read through them (``taskchan.send``, ``taskchan.metrics.metrics_view``)
  and each keyword argument passed to a taskchan callable (``max_attempts=``);
  a block whose fence is preceded by the line ``<!-- run -->`` is also
  executed, in a fresh namespace, with the in-memory layer and a database
  (consumers it registers are unregistered afterwards);
- ```sh blocks: every ``python manage.py COMMAND`` must name a real management
  command, and every ``--option`` passed to ``runworker`` or
  ``taskchan_status`` must exist in that command's parser.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from taskchan import registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_MARK = "<!-- run -->"
CHECKED_OPTIONS = ("runworker", "taskchan_status")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    run: bool

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def parse(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"docs/{path.name}:{start + 1}: unclosed code fence"
        blocks.append(Block(path.name, start + 1, match.group(1), "\n".join(body) + "\n", previous == RUN_MARK))
        i += 1
    return blocks


PAGES = sorted(DOCS.glob("*.md"))
BLOCKS = [block for page in PAGES for block in parse(page)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUNNABLE = [b for b in PYTHON if b.run]
SHELL = [b for b in BLOCKS if b.lang == "sh"]


def test_samples_were_found():
    assert PYTHON and RUNNABLE and SHELL
    marked_elsewhere = [b.where for b in BLOCKS if b.run and b.lang != "python"]
    assert not marked_elsewhere, f"{RUN_MARK} before a block that is not python: {marked_elsewhere}"


def test_every_fence_names_a_language():
    unnamed = [b.where for b in BLOCKS if not b.lang]
    assert not unnamed, f"code fences without a language (use text for signatures): {unnamed}"


def test_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    missing = [p.name for p in PAGES if p.name != "index.md" and f"({p.name})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def _resolve(value, attribute: str):
    """``value.attribute``, importing a submodule of a package if that is what it names."""
    try:
        return getattr(value, attribute)
    except AttributeError:
        if inspect.ismodule(value):
            try:
                return importlib.import_module(f"{value.__name__}.{attribute}")
            except ImportError:
                pass
        raise AttributeError(f"{getattr(value, '__name__', value)!r} has no {attribute!r}") from None


class TaskchanNames(ast.NodeVisitor):
    """Check every taskchan name a sample uses; ``errors`` says which do not exist.

    A sample may use ``taskchan.`` without importing it (the reader has): the
    bare name is the package.  Names bound by the sample's own imports of
    taskchan are followed through attribute reads and calls.
    """

    def __init__(self):
        self.bound = {"taskchan": importlib.import_module("taskchan")}
        self.errors: list[str] = []

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == "taskchan":
                try:
                    module = importlib.import_module(alias.name)
                except ImportError as exc:
                    self.errors.append(f"line {node.lineno}: import {alias.name}: {exc}")
                    continue
                if alias.asname:
                    self.bound[alias.asname] = module

    def visit_ImportFrom(self, node):
        if (node.module or "").split(".")[0] != "taskchan" or node.level:
            return
        try:
            module = importlib.import_module(node.module)
        except ImportError as exc:
            self.errors.append(f"line {node.lineno}: from {node.module}: {exc}")
            return
        for alias in node.names:
            try:
                self.bound[alias.asname or alias.name] = _resolve(module, alias.name)
            except AttributeError as exc:
                self.errors.append(f"line {node.lineno}: from {node.module} import {alias.name}: {exc}")

    def value_of(self, node):
        """The object a Name/Attribute chain rooted at a taskchan name stands for, or None."""
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.value_of(node.value)
            if base is None:
                return None
            try:
                return _resolve(base, node.attr)
            except AttributeError as exc:
                self.errors.append(f"line {node.lineno}: {exc}")
        return None

    def visit_Attribute(self, node):
        if self.value_of(node) is None:
            self.generic_visit(node)  # not a taskchan chain: look inside it

    def visit_Call(self, node):
        func = self.value_of(node.func)
        if callable(func) and node.keywords:
            try:
                parameters = inspect.signature(func).parameters
            except (TypeError, ValueError):  # a builtin without a signature
                parameters = {}
            open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
            for keyword in node.keywords:
                if keyword.arg and parameters and not open_ended and keyword.arg not in parameters:
                    self.errors.append(f"line {node.lineno}: {ast.unparse(node.func)}() has no argument {keyword.arg!r}")
        self.generic_visit(node)


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_sample_compiles_and_uses_only_real_taskchan_names(block):
    tree = ast.parse(compile(block.source, block.where, "exec", ast.PyCF_ONLY_AST), block.where)
    names = TaskchanNames()
    names.visit(tree)
    assert not names.errors, f"{block.where}: " + "; ".join(dict.fromkeys(names.errors))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_runnable_python_sample_runs(block, use_memory_layer):
    before = set(registry.all_consumers())
    try:
        exec(compile(block.source, block.where, "exec"), {"__name__": "docs_sample"})  # noqa: S102
    finally:
        for channel in set(registry.all_consumers()) - before:
            registry.unregister(channel)


def manage_commands(source: str):
    """(command, [arguments]) for every ``python manage.py COMMAND ...`` in a shell block."""
    text = source.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        for i, word in enumerate(words[:-1]):
            if word == "manage.py" and i > 0 and words[i - 1].endswith("python"):
                yield words[i + 1], words[i + 2 :]


def option_strings(name: str) -> set[str]:
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    return set(parser._option_string_actions)


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_sample_commands_exist(block):
    commands = get_commands()
    for name, args in manage_commands(block.source):
        assert name in commands, f"{block.where}: 'manage.py {name}' is not a management command"
        if name not in CHECKED_OPTIONS:
            continue
        known = option_strings(name)
        for arg in args:
            if arg in {"&&", "||", "|", ";", "&"}:
                break
            if arg.startswith("--"):
                option = arg.split("=", 1)[0]
                assert option in known, f"{block.where}: {name} has no option {option}"


LAYER_SAMPLES = [b for b in PYTHON if "CHANNEL_LAYERS = " in b.source and "RedisChannelLayer" in b.source]


@pytest.mark.parametrize("block", LAYER_SAMPLES, ids=[b.where for b in LAYER_SAMPLES])
def test_channel_layer_sample_builds_the_store_it_describes(block):
    """A CHANNEL_LAYERS sample is one taskchan accepts (E008's rules) and builds a
    store from, without connecting: one Redis, or a ShardedStore for several."""
    from taskchan.stores.configured import redis_store
    from taskchan.stores.redis import RedisStore
    from taskchan.stores.sharded import ShardedStore

    namespace: dict = {"INSTALLED_APPS": []}  # a sample added to settings.py may extend it
    exec(compile(block.source, block.where, "exec"), namespace)  # noqa: S102
    for alias, layer in namespace["CHANNEL_LAYERS"].items():
        if layer["BACKEND"] != "taskchan.layers.RedisChannelLayer":
            continue
        config = layer.get("CONFIG", {})
        store = redis_store(config.get("hosts"), config.get("taskchan_host"), config.get("taskchan_hosts"))
        expected = len(config.get("taskchan_hosts") or ([config["taskchan_host"]] if config.get("taskchan_host")
                                                        else config.get("hosts") or [None]))
        assert isinstance(store, ShardedStore if expected > 1 else RedisStore), (block.where, alias)
