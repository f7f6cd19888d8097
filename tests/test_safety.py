"""Safety: no code path deserialises pickles, evaluates strings or imports what a config names.

The source scan parses every `.py` file of `src/` (and `benchmarks/`, if present) with `ast`, so that comments and
docstrings that mention a risky call (e.g. "loads as remote code with trust_remote_code=True") do not trigger, while
an aliased import (`import pickle as p`, `from torch import load`) still does.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_TINY

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANNED_TREES = [REPO_ROOT / "src", REPO_ROOT / "benchmarks"]

# modules whose import alone means deserialising arbitrary objects or instantiating config-named classes
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "hydra",
                     "omegaconf"}
# fully qualified calls that execute code or unpickle
FORBIDDEN_CALLS = {
    "eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec", "builtins.compile",
    "torch.load", "torch.hub.load", "torch.hub.load_state_dict_from_url", "torch.serialization.load",
    "torch.jit.load", "numpy.load", "pandas.read_pickle", "os.system", "os.popen",
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
    "hydra.utils.instantiate", "hydra.utils.get_class", "hydra.utils.get_method",
}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
IMPORT_MODULE = {"importlib.import_module", "importlib.__import__"}
# the only package prefix a dynamic import may name (a constant, never a value read from a file)
ALLOWED_DYNAMIC_IMPORT_PREFIX = "videoflextok_hf."


def _python_files() -> list[Path]:
    files = []
    for tree in SCANNED_TREES:
        if tree.is_dir():
            files.extend(p for p in tree.rglob("*.py") if "egg-info" not in str(p))
    return sorted(files)


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> qualified name for every import in the module (any scope)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                head = alias.name.split(".")[0]
                names[alias.asname or head] = alias.name if alias.asname else head
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _constant_import_target(node: ast.AST) -> str | None:
    """The module name of `import_module(<arg>)` when it is fixed in the source (a constant, or an f-string whose
    constant head pins the package), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def scan_source(source: str, filename: str = "<string>") -> list[str]:
    """Every risky construct in `source`, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    in_conversion = "conversion" in Path(filename).parts
    problems = []

    def report(node, what):
        problems.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    report(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                report(node, f"imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _qualified(node.func, aliases)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name in FORBIDDEN_CALLS or (name and name.split(".")[0] in FORBIDDEN_MODULES):
                report(node, f"calls {name}")
            if name in ("yaml.load", "yaml.load_all"):
                loader = keywords.get("Loader") or (node.args[1] if len(node.args) > 1 else None)
                loader_name = _qualified(loader, aliases) if loader is not None else None
                if not loader_name or loader_name.rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                    report(node, f"{name} without a safe Loader (use yaml.safe_load)")
            if name in IMPORT_MODULE:
                target = _constant_import_target(node.args[0]) if node.args else None
                if in_conversion:
                    report(node, f"{name} in conversion (config values must never choose what is imported)")
                elif target is None or not target.startswith(ALLOWED_DYNAMIC_IMPORT_PREFIX):
                    shown = ast.unparse(node.args[0]) if node.args else ""
                    report(node, f"{name} of a non-constant or foreign module ({shown})")
            if name and name.startswith("subprocess.") and _is_true(keywords.get("shell")):
                report(node, f"{name} with shell=True")
            if _is_true(keywords.get("trust_remote_code")):
                report(node, "passes trust_remote_code=True")
            if _is_false(keywords.get("weights_only")):
                report(node, "passes weights_only=False")
            if _is_true(keywords.get("allow_pickle")):
                report(node, "passes allow_pickle=True")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in defaults:
                if arg.arg == "trust_remote_code" and _is_true(default):
                    report(node, "defaults trust_remote_code to True")
                if arg.arg == "weights_only" and _is_false(default):
                    report(node, "defaults weights_only to False")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and _is_true(value):
                    report(node, "sets trust_remote_code=True in a dict")
                if isinstance(key, ast.Constant) and key.value == "weights_only" and _is_false(value):
                    report(node, "sets weights_only=False in a dict")
    return problems


def test_the_source_tree_has_no_unsafe_deserialisation_or_dynamic_code():
    files = _python_files()
    assert len(files) >= 20, files  # the scan really covers the package
    problems = [problem for path in files
                for problem in scan_source(path.read_text(), str(path.relative_to(REPO_ROOT)))]
    assert not problems, "unsafe constructs:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "code,finding",
    [
        ("import torch\ntorch.load('x')", "calls torch.load"),
        ("from torch import load as L\nL('x')", "calls torch.load"),
        ("import pickle", "imports pickle"),
        ("import cloudpickle as cp", "imports cloudpickle"),
        ("from pickle import loads", "imports from pickle"),
        ("eval('1')", "calls eval"),
        ("exec('x = 1')", "calls exec"),
        ("import yaml\nyaml.load(open('a'))", "without a safe Loader"),
        ("import yaml\nyaml.load(open('a'), Loader=yaml.FullLoader)", "without a safe Loader"),
        ("import yaml\nyaml.unsafe_load(open('a'))", "calls yaml.unsafe_load"),
        ("import importlib\ndef f(cfg):\n    return importlib.import_module(cfg['_target_'])", "non-constant"),
        ("from importlib import import_module\nimport_module('os')", "foreign module"),
        ("def f(repo, trust_remote_code=True):\n    pass", "defaults trust_remote_code to True"),
        ("from transformers import AutoModel\nAutoModel.from_pretrained('r', trust_remote_code=True)",
         "passes trust_remote_code=True"),
        ("import torch\ntorch.serialization.load('x', weights_only=False)", "weights_only=False"),
        ("import numpy as np\nnp.load('x', allow_pickle=True)", "calls numpy.load"),
        ("import os\nos.system('ls')", "calls os.system"),
        ("import subprocess\nsubprocess.run('ls', shell=True)", "shell=True"),
    ],
)
def test_the_scanner_finds_each_risky_construct(code, finding):
    assert any(finding in problem for problem in scan_source(code)), scan_source(code)


def test_the_scanner_ignores_comments_docstrings_and_safe_forms():
    code = '''
"""Load with `torch.load(path)`? Never: pickle is unsafe; AutoModel.from_pretrained(repo, trust_remote_code=True)."""
import importlib
import yaml
from safetensors.torch import load_file

# eval( exec( pickle.loads(  yaml.load(
def load(path, trust_remote_code=False):
    """eval(x)"""
    tree = yaml.safe_load(open(path))
    other = yaml.load(open(path), Loader=yaml.SafeLoader)
    module = importlib.import_module(f"videoflextok_hf.{'pipeline'}")
    model.eval()
    return load_file(path), tree, other, module
'''
    assert scan_source(code) == []
    assert scan_source("import importlib\nimportlib.import_module('x')", "src/pkg/conversion/a.py")  # never there


# ---------------------------------------------------------------------------------------------------------------
# conversion never imports or calls what a config's `_target_` names


# what a hostile or official `_target_` names: acting on any of these would mean the config chose code to run
_TARGET_ROOTS = ("os", "posix", "builtins", "subprocess", "evil_module", "videoflextok.")


def _names_a_target(name) -> bool:
    return isinstance(name, str) and (name in _TARGET_ROOTS or name.startswith(_TARGET_ROOTS))


@pytest.fixture
def tripwires(monkeypatch):
    """Record every way a `_target_` could be acted on: imported by name, called, or evaluated as code."""
    import builtins
    import importlib

    import videoflextok_hf.conversion  # noqa: F401 (the package itself is imported before the wires go up)

    calls = []

    def refuse(name):
        def record(*args, **kwargs):
            calls.append((name, args))
            raise AssertionError(f"{name} was called with {args}")
        return record

    real_import, real_import_module, real_eval, real_exec = (builtins.__import__, importlib.import_module,
                                                             builtins.eval, builtins.exec)

    def guarded_import(name, *args, **kwargs):
        if _names_a_target(name) and name not in ("os", "builtins", "subprocess", "posix"):
            calls.append(("__import__", name))
        return real_import(name, *args, **kwargs)

    def guarded_import_module(name, *args, **kwargs):
        if _names_a_target(name):
            calls.append(("importlib.import_module", name))
        return real_import_module(name, *args, **kwargs)

    def guarded(kind, real):
        def run(source, *args, **kwargs):
            if isinstance(source, str):  # the import system execs code objects; strings would be config text
                calls.append((kind, source))
            return real(source, *args, **kwargs)
        return run

    monkeypatch.setattr(os, "system", refuse("os.system"))
    monkeypatch.setattr(os, "popen", refuse("os.popen"))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    monkeypatch.setattr(importlib, "import_module", guarded_import_module)
    monkeypatch.setattr(builtins, "__import__", guarded_import)
    monkeypatch.setattr(builtins, "eval", guarded("eval", real_eval))
    monkeypatch.setattr(builtins, "exec", guarded("exec", real_exec))
    return calls


def _official_copy(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "official"
    shutil.copytree(REFERENCE_TINY / "official", folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


_MARKER = "/tmp/videoflextok-safety-test-marker-must-not-exist"


def _set_root(config):
    config["video_flex_tok"]["_target_"] = "os.system"
    config["video_flex_tok"]["_args_"] = [f"touch {_MARKER}"]


def _set_nested(config):
    encoder = config["video_flex_tok"]["encoder"]["module_dict"]
    name = next(iter(encoder))
    encoder[name]["_target_"] = "os.system"
    encoder[name]["command"] = f"touch {_MARKER}"


def _set_top_level(config):
    config["video_preprocess_args"] = {"_target_": "evil_module.run", "x": 1}


def _set_in_list(config):
    config["vae_video_sizes"] = [{"_target_": "builtins.eval", "_args_": ["__import__('os').system('true')"]}]


def _set_non_string(config):
    config["video_flex_tok"]["decoder"]["_target_"] = {"_target_": "os.system"}


@pytest.mark.parametrize("edit", [_set_root, _set_nested, _set_top_level, _set_in_list, _set_non_string],
                         ids=["root", "nested", "top_level", "in_list", "non_string"])
def test_a_target_off_the_allow_list_is_refused_and_never_acted_on(tmp_path, tripwires, edit):
    from videoflextok_hf.conversion import OriginalCheckpointError, load_original
    from videoflextok_hf.conversion.convert_original import main as convert_main

    folder = _official_copy(tmp_path, edit)
    with pytest.raises(OriginalCheckpointError, match="allow-list"):
        load_original(folder)
    out = tmp_path / "converted"
    with pytest.raises(SystemExit, match="videoflextok-convert: .*allow-list"):
        convert_main(["--src", str(folder), "--dst", str(out)])
    assert tripwires == []
    assert not out.exists() and not Path(_MARKER).exists()


def test_the_allow_list_holds_only_official_videoflextok_classes():
    from videoflextok_hf.conversion import ALLOWED_TARGETS

    assert ALLOWED_TARGETS and all(isinstance(t, str) for t in ALLOWED_TARGETS)
    # only the official model code: no builtins, os, subprocess, importlib, ...
    assert {target.split(".")[0] for target in ALLOWED_TARGETS} == {"videoflextok"}


def test_converting_the_official_config_imports_nothing_it_names(tmp_path, tripwires):
    """Even allowed `_target_`s are only read as names: a full conversion calls no import machinery on them."""
    from videoflextok_hf.conversion import load_original

    model = load_original(REFERENCE_TINY / "official", verify=False)
    assert isinstance(model, torch.nn.Module)
    assert tripwires == []
