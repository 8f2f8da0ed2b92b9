"""Publishable on the Comfy Registry (issue 22): the archive comfy-cli would upload, the scan rules, pyproject.toml.

tools/registry_check.py selects the files exactly as ``comfy node publish`` does (git ls-files - .comfyignore +
[tool.comfy].includes) and applies the Registry's known scan rules; a finding outside its ALLOWED list fails here.
"""

from __future__ import annotations

import ast
import re
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import registry_check as rc  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEV_ONLY = ("tests/", "tools/", "benchmarks/", ".ci/")


@pytest.fixture(scope="module")
def archive():
    return rc.archive_files()


@pytest.fixture(scope="module")
def findings(archive):
    return rc.scan(files=archive)


# ---------------------------------------------------------------- the archive


def test_comfyignore_patterns_read_as_pathspec_reads_them():
    """Our gitwildmatch equals pathspec's (comfy-cli's) on every tracked path and on patterns of every kind."""
    pathspec = pytest.importorskip("pathspec")
    paths = rc.tracked_files() + ["a/b/c.py", "tests", "x/tests/y.py", "docs/img/a.png", "web/x.min.js",
                                  "a/node_modules/b.js", "deep/a/b/c.md", "x.pyc", "sub/x.pyc", "abc/def"]
    pattern_sets = [rc.read_comfyignore(), ["*.md", "!README.md"], ["**/tests/**"], ["docs/*.png", "/x.pyc"],
                    ["*.py[cod]", "node_modules/", "**/*.min.js"], ["a/**/c.py", "abc"], ["tests", "!tests/x"],
                    ["/deep/**"], ["*"], ["d?cs/"], ["[a-c]*/"], ["benchmarks/*.py"]]
    for patterns in pattern_sets:
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
        assert [p for p in paths if spec.match_file(p) != rc.ignored(p, patterns)] == [], patterns


def test_comfyignore_is_read_like_comfy_cli(tmp_path):
    (tmp_path / ".comfyignore").write_text("# a comment\n\n  /tests/  \n   # indented comment\n*.tmp\n")
    assert rc.read_comfyignore(tmp_path) == ["/tests/", "*.tmp"]
    assert rc.read_comfyignore(tmp_path / "absent") == []


def test_includes_override_comfyignore(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.js").write_text("")
    (tmp_path / "keep.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("")
    files = rc.archive_files(tmp_path, tracked=["keep.py", "tests/t.py", "gone.py"], patterns=["/tests/", "web/"],
                             includes=["/web"])
    assert files == ["keep.py", "web/a.js"]  # untracked web/ comes in by includes; gone.py is not on disk


def test_archive_holds_what_runs_and_nothing_dev_only(archive):
    assert not [f for f in archive if f.startswith(DEV_ONLY)]
    for needed in ("__init__.py", "install.py", "requirements.txt", "pyproject.toml", "LICENSE", "README.md"):
        assert needed in archive
    # every module on disk ships: a new module left out of git would break the published pack
    on_disk = sorted(p.relative_to(ROOT).as_posix() for folder in ("nodes", "musetalk_core")
                     for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    assert [f for f in on_disk if f not in archive] == [], "git add them (comfy-cli zips only git-tracked files)"
    templates = [f for f in archive if f.startswith("example_workflows/")]
    assert templates and all(Path(f).stem + ".json" in {Path(t).name for t in templates} for f in templates)


def test_archived_code_imports_nothing_left_out(archive):
    """No shipped module imports tests, tools or benchmarks (they are not in the archive)."""
    bad = []
    for rel in (f for f in archive if f.endswith(".py")):
        for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [(rel, n) for n in names if n.split(".")[0] in ("tests", "tools", "benchmarks", "conftest")]
    assert bad == []


# ---------------------------------------------------------------- the scan


@pytest.mark.parametrize("text, rule", [
    ("import subprocess\n", "python_command_injection_risk"),
    ("os.system('ls')\n", "python_command_injection_risk"),
    ("with urllib.request.urlopen(u) as r:\n", "python_network_operations"),
    ("r = requests.get(u)\n", "python_network_operations"),
    ("s.bind(('', 80))\n", "python_network_operations"),
    ("m = importlib.import_module('x')\n", "python_bytecode_manipulation"),
    ("v = os.environ.get('X')\n", "python_environment_manipulation"),
    ("# reads os.environ\n", "python_environment_manipulation"),  # YARA matches comments too
    ("eval(s)\n", "python_dynamic_execution"),
    ("a = 1; b = 2\n", "ruff_E702"),
])
def test_rules_fire(text, rule):
    assert rule in {f.rule for f in rc.scan_text("x.py", text)}


@pytest.mark.parametrize("text", ["model.eval()\n", "x = 'a; b'\n", "torch.compile(fn, mode=mode)\n",
                                  "import importlib.machinery\n", "a = 1;\n", "p = os.path.join(a, b)\n"])
def test_rules_stay_quiet(text):
    assert rc.scan_text("x.py", text) == []


def test_no_finding_outside_the_allow_list(findings):
    _, bad = rc.split_allowed(findings)
    assert bad == [], "findings the Registry would flag (fix them, or add to ALLOWED with why and to README):\n" + \
        "\n".join(map(str, bad))


def test_allow_list_entries_still_exist(archive, findings):
    found = {(f.path, f.rule) for f in findings}
    for entry in rc.ALLOWED:
        assert entry.rule in rc.ALL_RULES, entry
        assert entry.path in archive, f"{entry.path} is no longer published: drop its ALLOWED entry"
        assert (entry.path, entry.rule) in found, f"stale ALLOWED entry (no such finding any more): {entry}"
        assert len(entry.why) > 40, entry
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{entry.path}`" in readme for entry in rc.ALLOWED), "README's Comfy Registry list names each file"


def test_what_comfyui_imports_at_start_has_no_finding(archive):
    """Loading the pack as ComfyUI does imports no module with a finding (allowed ones included)."""
    code = ("import importlib.util, sys\n"
            f"root = {str(ROOT)!r}\n"
            "spec = importlib.util.spec_from_file_location('pack_under_test', root + '/__init__.py',"
            " submodule_search_locations=[root])\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['pack_under_test'] = m\n"
            "spec.loader.exec_module(m)\n"
            "print('\\n'.join(sorted({getattr(v, '__file__', None) or '' for v in list(sys.modules.values())})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    files = {Path(p).resolve() for p in out.splitlines() if p}
    loaded = {p.relative_to(ROOT).as_posix() for p in files if p.is_relative_to(ROOT)} & set(archive)
    assert "nodes/load_models.py" in loaded
    flagged = {f.path for f in rc.scan(files=sorted(loaded))}
    assert flagged == set()


def _module_file(name: str, archive) -> str:
    """The archived file of a module name (musetalk_core.x.y, nodes.x), or ''."""
    base = name.replace(".", "/")
    for candidate in (base + ".py", base + "/__init__.py"):
        if candidate in archive:
            return candidate
    return ""


def _imports(rel: str, archive) -> set:
    """Archived files a module imports anywhere in its body (function-level imports included)."""
    package = rel[:-len("/__init__.py")] if rel.endswith("/__init__.py") else rel.rsplit("/", 1)[0] if "/" in rel \
        else ""
    out = set()
    for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split("/") if package else []
                parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
                prefix = ".".join(parts)
                mod = ".".join(p for p in (prefix, node.module or "") if p)
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        out |= {f for f in (_module_file(n, archive) for n in names) if f}
    return out


def test_what_nodes_can_import_has_no_finding_but_the_models_folder_fallback(archive, findings):
    """Everything the nodes reach by import, at start or during a prompt: no file with a finding, except
    environment.py through model_files.default_models_dirs (used only outside ComfyUI, tests/scripts)."""
    flagged = {f.path for f in findings}
    seen, todo, via = set(), ["__init__.py"] + [f for f in archive if f.startswith("nodes/")], {}
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for dep in _imports(rel, archive):
            via.setdefault(dep, set()).add(rel)
            todo.append(dep)
    assert {"musetalk_core/generators/musetalk/generate.py", "musetalk_core/blend/blender.py", "musetalk_core/weights/loading.py"} <= seen
    assert "musetalk_core/cli.py" not in seen
    reached = {f: sorted(via.get(f, ())) for f in seen & flagged}
    assert reached == {"musetalk_core/environment.py": ["musetalk_core/weights/files.py"]}


# ---------------------------------------------------------------- pyproject.toml


def _png_size(path: Path):
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pyproject_is_complete_for_publishing():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    # the Registry's node id rules (docs.comfy.org/registry/specifications)
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*", project["name"]) and len(project["name"]) < 100
    assert "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "semantic version X.Y.Z"
    assert (ROOT / project["license"]["file"]).is_file() and (ROOT / project["readme"]).is_file()
    assert project["description"]
    repo = project["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo)
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # classifiers comfy-cli accepts (others make it drop the whole OS / accelerator list)
    for c in project["classifiers"]:
        if c.startswith("Operating System :: "):
            assert c.split(" :: ")[1] in ("Microsoft", "POSIX", "MacOS", "OS Independent")
        if c.startswith("Environment :: "):
            assert c[len("Environment :: "):] in ("GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc",
                                                   "NPU :: Huawei Ascend", "GPU :: Apple Metal")
    for include in comfy.get("includes", []):
        assert (ROOT / include.lstrip("/")).exists()


def test_icon_is_a_url_to_a_committed_square_png():
    repo = PYPROJECT["project"]["urls"]["Repository"]
    icon = PYPROJECT["tool"]["comfy"]["Icon"]
    owner_repo = repo.split("github.com/")[1]
    m = re.fullmatch(rf"https://raw\.githubusercontent\.com/{re.escape(owner_repo)}/([\w.-]+)/(.+)", icon)
    assert m, icon
    path = m.group(2)
    assert path in rc.tracked_files(), f"{path} must be committed (the URL serves the repository's file)"
    width, height = _png_size(ROOT / path)
    assert width == height <= 400


def test_requires_comfyui_is_valid_and_met_by_the_tested_comfyui():
    spec = PYPROJECT["tool"]["comfy"]["requires-comfyui"]
    parts = [p.strip() for p in spec.split(",")]
    pattern = r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$"  # comfy-cli validate_version
    assert all(re.match(pattern, p) for p in parts), spec
    assert len(parts) == 1 and parts[0].startswith(">="), "a lower bound only"
    floor = tuple(int(x) for x in parts[0][2:].strip().split("."))
    assert floor >= (0, 3, 44), "VIDEO (0.3.31) read lazily through get_stream_source (0.3.44)"
    tarballs = sorted((ROOT.parent / "shared" / "vendor").glob("comfyui-*.tar.gz"))
    for tarball in tarballs:  # the ComfyUI the integration tests run
        tested = tuple(int(x) for x in re.search(r"comfyui-(\d+\.\d+\.\d+)", tarball.name).group(1).split("."))
        assert tested >= floor
