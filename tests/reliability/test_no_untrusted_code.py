"""Nothing untrusted is executed: no code path deserialises or evaluates data as code.

The source of grpo_jax/, launch.py, configs/ and benchmarks/ is parsed (AST, so comments and
strings do not count) and searched for the ways a file or a string becomes code: pickle and its
relatives, eval/exec/compile, torch.load, yaml.load without a safe loader, numpy's allow_pickle,
a shell, `trust_remote_code` other than False, a hub download, a dynamic import of a computed
name. The scanner is itself checked on snippets that contain each pattern, so a scanner that
finds nothing cannot pass. A tokenizer or model directory that asks for remote code (an
`auto_map`) is loaded without running it.
"""
from __future__ import annotations

import ast
import json
import pathlib
import shutil

import pytest

from grpo_jax import chat
from grpo_jax.models import load_hf_model

REPO = pathlib.Path(__file__).resolve().parents[2]
SCANNED = ("grpo_jax", "launch.py", "configs", "benchmarks")

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_CALLS = {("torch", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("os", "system"),
                ("os", "popen"), ("hf_hub", "download"), ("huggingface_hub", "hf_hub_download"),
                ("huggingface_hub", "snapshot_download")}
SHELL_MODULES = {"subprocess"}
# Documented safe uses: (file, the exact source of the call). Each is explained.
ALLOWED: dict[tuple[str, str], str] = {}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def scan(source: str) -> list[str]:
    """Every unsafe construct in a module's source, as 'line N: what'."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                     else [])
            for name in names:
                if name.split(".")[0] in UNSAFE_MODULES:
                    problems.append(f"line {node.lineno}: imports {name}")
            if isinstance(node, ast.ImportFrom) and node.module in ("huggingface_hub",):
                problems.append(f"line {node.lineno}: imports from huggingface_hub (downloads)")
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        where = f"line {node.lineno}: {ast.unparse(node)[:120]}"
        if isinstance(node.func, ast.Name) and node.func.id in UNSAFE_BUILTINS:
            problems.append(f"{where} (builtin {node.func.id})")
        if dotted[-2:] in UNSAFE_CALLS:
            problems.append(f"{where} ({'.'.join(dotted[-2:])})")
        if dotted[-2:] == ("yaml", "load"):
            loader = _keyword(node, "Loader")
            if loader is None or "Safe" not in ast.unparse(loader):
                problems.append(f"{where} (yaml.load without SafeLoader)")
        allow_pickle = _keyword(node, "allow_pickle")
        if allow_pickle is not None and not (isinstance(allow_pickle, ast.Constant) and allow_pickle.value is False):
            problems.append(f"{where} (allow_pickle)")
        shell = _keyword(node, "shell")
        if shell is not None and dotted and dotted[0] in SHELL_MODULES and not (
                isinstance(shell, ast.Constant) and shell.value is False):
            problems.append(f"{where} (shell=)")
        remote = _keyword(node, "trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            problems.append(f"{where} (trust_remote_code not False)")
        if dotted and dotted[-1] == "from_pretrained":
            local = _keyword(node, "local_files_only")
            if not (isinstance(local, ast.Constant) and local.value is True) or remote is None:
                problems.append(f"{where} (from_pretrained without local_files_only=True, trust_remote_code=False)")
        if dotted[-1:] == ("import_module",) and not all(isinstance(a, ast.Constant) for a in node.args):
            problems.append(f"{where} (import of a computed name)")
    return problems


def _files():
    for root in SCANNED:
        path = REPO / root
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def test_the_package_launcher_configs_and_benchmarks_execute_nothing_untrusted():
    files = list(_files())
    assert len(files) > 40 and any(f.name == "hf_io.py" for f in files)
    found = []
    for file in files:
        relative = file.relative_to(REPO).as_posix()
        found += [f"{relative} {p}" for p in scan(file.read_text(encoding="utf-8"))
                  if (relative, p) not in ALLOWED]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle", "from cloudpickle import loads", "import dill as d", "eval(text)", "exec(code)",
    "compile(src, 'f', 'exec')", "__import__(name)", "torch.load(path)", "yaml.load(stream)",
    "yaml.load(stream, Loader=yaml.Loader)", "yaml.unsafe_load(s)", "np.load(p, allow_pickle=True)",
    "subprocess.run(cmd, shell=True)", "subprocess.Popen(cmd, shell=flag)", "os.system(cmd)",
    "AutoModel.from_pretrained(p, trust_remote_code=True, local_files_only=True)",
    "AutoTokenizer.from_pretrained(p)", "AutoTokenizer.from_pretrained(p, trust_remote_code=False)",
    "from huggingface_hub import snapshot_download", "importlib.import_module(name)",
])
def test_the_scanner_finds_each_pattern(snippet):
    assert scan(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "model.eval()", "re.compile(p)", "yaml.safe_load(s)", "yaml.load(s, Loader=yaml.SafeLoader)",
    "np.load(p, allow_pickle=False)", "subprocess.run([sys.executable, 'x.py'])",
    "AutoTokenizer.from_pretrained(p, local_files_only=True, trust_remote_code=False)",
    "importlib.import_module('grpo_jax.models.hf_io')", "# import pickle", "x = 'eval(1)'",
])
def test_the_scanner_allows_the_safe_forms(snippet):
    assert not scan(snippet), snippet


REMOTE_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
class EvilTokenizer: pass
class EvilConfig: pass
"""


def test_a_directory_asking_for_remote_code_never_runs_it(tiny_hf_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_hf_dir, model_dir)
    marker = tmp_path / "marker"
    (model_dir / "evil.py").write_text(REMOTE_CODE.format(marker=str(marker)))
    auto_maps = {"tokenizer_config.json": {"AutoTokenizer": ["evil.EvilTokenizer", None]},
                 "config.json": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilConfig"}}
    for name, auto_map in auto_maps.items():
        content = json.loads((model_dir / name).read_text())
        content["auto_map"] = auto_map
        (model_dir / name).write_text(json.dumps(content))

    try:
        chat.load_tokenizer(model_dir)
    except ValueError as error:  # refusing is as good as ignoring: what matters is the marker
        assert "trust_remote_code" in str(error) or "remote" in str(error)
    load_hf_model(model_dir)  # our own reader: config.json is data, auto_map is ignored
    assert not marker.exists()
