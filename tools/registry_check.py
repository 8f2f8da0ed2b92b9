"""What the Comfy Registry's scan would find in the archive ``comfy node publish`` uploads.

    python tools/registry_check.py            # findings, allowed ones marked; exit 1 on any finding not allowed
    python tools/registry_check.py --files    # the archive's file list (what `comfy node pack` would zip)

The file selection is comfy-cli's own (comfy_cli/file_utils.py ``zip_files``, comfy-cli 1.23.0, read for this): the
files ``git ls-files`` lists (the index: committed and staged files, never untracked ones), minus the paths a
``.comfyignore`` pattern matches, plus every file under a ``[tool.comfy].includes`` path, tracked or not (.comfyignore does not apply there).
.comfyignore is read like comfy-cli reads it: every line stripped, blank lines and lines starting with ``#``
dropped, the rest gitwildmatch patterns (pathspec's ``PathSpec.from_lines("gitwildmatch", ...)``), matched against
the repository-relative path with ``/`` separators, the last matching pattern deciding (``!`` re-includes).
``gitwildmatch`` below implements those patterns without the pathspec package; tests/test_registry.py compares it
with pathspec where pathspec is installed.

The rules are the Registry's scan rules seen firing on other packs (Comfy-Org/registry-backend issues #171-#247,
ComfyUI-Manager #2927/#3085/#3111): YARA string matches, so a comment or docstring matches as well as code. They are
applied to the archive's Python files; ``vendored_unknown`` to every archived file that is a script or binary of
another language (the provenance scan). ``comfy node publish`` also runs ruff with S102 (exec), S307 (eval) and E702
(statements joined by ";") over the folder; those are ``python_dynamic_execution`` and ``ruff_E702`` here. The
list is a best reconstruction from published findings, not the Registry's rule file, which is not public.

ALLOWED lists the findings that must stay, each with why, for the Registry's manual review (README, "Comfy
Registry"). tests/test_registry.py fails on a finding not in ALLOWED and on an ALLOWED entry that no longer matches.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]

# rule -> regular expressions (any match in a file is one finding per line)
RULES: Dict[str, Tuple[str, ...]] = {
    "python_command_injection_risk": (
        r"\bsubprocess\b", r"\bos\.system\s*\(", r"\bos\.popen\s*\(", r"\bos\.spawn\w*\s*\(",
        r"\bos\.exec[lv]p?e?\s*\(", r"\bos\.startfile\s*\(", r"\bpty\.spawn\s*\(", r"\bcommands\.getoutput\b",
    ),
    "python_network_operations": (
        r"\burllib\.request\b", r"\burlopen\s*\(", r"\burllib3\b", r"\bhttp\.client\b", r"\bhttpx\b",
        r"\brequests\.(get|post|put|patch|delete|head|request|Session)\b", r"^\s*(import|from)\s+requests\b",
        r"\bsocket\.socket\s*\(", r"^\s*(import|from)\s+socket\b", r"\.connect\s*\(", r"\.bind\s*\(",
        r"\.sendall\s*\(", r"\bftplib\b", r"\bsmtplib\b", r"\baiohttp\.ClientSession\b", r"\bwebsocket",
    ),
    "python_bytecode_manipulation": (
        r"\bimportlib\.import_module\b", r"(?<![\w.])__import__\s*\(", r"\bimportlib\.util\b", r"\.exec_module\s*\(",
        r"\bmarshal\.loads?\b", r"\btypes\.CodeType\b", r"\.__code__\b", r"\bimportlib\.reload\b",
    ),
    "python_dynamic_execution": (
        r"(?<![\w.])eval\s*\(", r"(?<![\w.])exec\s*\(", r"(?<![\w.])compile\s*\([^)]*['\"]exec['\"]",
        r"\bexecfile\s*\(",
    ),
    "python_environment_manipulation": (
        r"\bos\.environ\b", r"\bos\.getenv\s*\(", r"\bos\.putenv\s*\(", r"\bos\.unsetenv\s*\(",
    ),
    "python_sensitive_file_access": (
        r"\.ssh/", r"\bid_rsa\b", r"/etc/passwd", r"/etc/shadow", r"\.aws/credentials", r"\.bash_history",
        r"Login Data", r"wallet\.dat", r"\.git-credentials",
    ),
    "python_url_command_execution": (
        r"\b(curl|wget)\s+(-\S+\s+)*['\"]?https?://", r"\bpowershell\b", r"\bcmd\.exe\b", r"\bbash\s+-c\b",
    ),
    "windows_process_manipulation": (
        r"\bctypes\.windll\b", r"\bCreateRemoteThread\b", r"\bVirtualAllocEx\b", r"\bWriteProcessMemory\b",
        r"\bOpenProcess\b",
    ),
    "contains_btc_address": (
        r"\b(bc1[02-9ac-hj-np-z]{25,59}|[13][a-km-zA-HJ-NP-Z1-9]{25,34})\b",
    ),
}
_COMPILED = {rule: [re.compile(p, re.MULTILINE) for p in pats] for rule, pats in RULES.items()}

# other languages' scripts and binaries: shipped, each one is a provenance ("vendored_unknown") finding
VENDORED_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".wasm", ".so", ".dll", ".dylib", ".pyd", ".exe", ".whl",
                     ".jar", ".pyc", ".zip", ".tar", ".gz", ".7z")
ALL_RULES = tuple(RULES) + ("ruff_E702", "vendored_unknown")


@dataclass(frozen=True)
class Allowed:
    path: str
    rule: str
    why: str


# Findings that stay, and why (the Registry's manual review reads this list in README, "Comfy Registry").
ALLOWED: Tuple[Allowed, ...] = (
    Allowed("install.py", "python_command_injection_risk",
            "the installer ComfyUI-Manager and the Registry run once: `python -m pip install -r requirements.txt` "
            "with sys.executable and an argument list (no shell), and `python -c` probes of the installed torch "
            "and of the optional mmpose import; never imported by ComfyUI"),
    Allowed("install.py", "python_environment_manipulation",
            "the installer reads (never writes) $MUSETALK_TORCH_SPEC (the torch to install when none is present) "
            "and $MUSETALK_MODELS_DIR (where --download-models writes outside ComfyUI)"),
    Allowed("musetalk_core/weights/download.py", "python_network_operations",
            "the explicit model download (`python install.py --download-models v15`): urllib.request GETs of the "
            "fixed Hugging Face / published URLs in model_files.py, only when the user runs that command; no node "
            "imports this module, nothing is downloaded during a prompt"),
    Allowed("musetalk_core/environment.py", "python_environment_manipulation",
            "the one module that reads (never writes) the pack's environment variables, for the command line and "
            "the batch's Ray workers (MUSETALK_MODELS_DIR, MUSETALK_COMPILE_MODE, MUSETALK_CPU_THREADS, "
            "PYTHONPATH); inside ComfyUI nothing calls it (the models folders come from ComfyUI)"),
    Allowed("musetalk_core/realtime/server.py", "python_network_operations",
            "the real-time avatar server, `python -m musetalk_core serve` (aiohttp on --host/--port, 127.0.0.1 by "
            "default): `import socket` sets a WebSocket's kernel send buffer (SO_SNDBUF) so a slow client's frames "
            "wait where the oldest can be dropped; it runs only when the user starts that command, no node imports it"),
    Allowed("musetalk_core/realtime/web/app.js", "vendored_unknown",
            "the real-time server's web page script: the pack's own source (readable, no dependency, nothing "
            "minified), served at / by `python -m musetalk_core serve`; ComfyUI never loads it"),
)


def gitwildmatch(pattern: str) -> Tuple[Optional[re.Pattern], bool]:
    """(regex, include) for one .comfyignore line, as pathspec's gitwildmatch reads it; (None, _) for no pattern."""
    if not pattern or pattern.startswith("#"):
        return None, True
    include = True
    if pattern.startswith("!"):
        include, pattern = False, pattern[1:]
    if pattern.startswith("\\"):
        pattern = pattern[1:]
    segs = pattern.split("/")
    if not segs[0]:
        del segs[0]  # a leading slash anchors the pattern to the root
    elif len(segs) == 1 or (len(segs) == 2 and not segs[1]):
        if segs[0] != "**":
            segs.insert(0, "**")  # a bare name matches at any depth
    if not segs or segs == [""]:
        return None, include
    if not segs[-1] and len(segs) > 1:
        segs[-1] = "**"  # "dir/": everything below dir
    out, need_slash, end = ["^"], False, len(segs) - 1
    for i, seg in enumerate(segs):
        if seg == "**":
            if i == 0 and i == end:
                out.append(r"[^/]+(?:/.*)?")
            elif i == 0:
                out.append(r"(?:.+/)?")
                need_slash = False
            elif i == end:
                out.append(r"/.*")
            else:
                out.append(r"(?:/.+)?")
                need_slash = True
        elif seg == "*":
            if need_slash:
                out.append("/")
            out.append(r"[^/]+")
            if i == end:
                out.append(r"(?:/.*)?")
            need_slash = True
        else:
            if need_slash:
                out.append("/")
            out.append(_glob_segment(seg))
            if i == end:
                out.append(r"(?:/.*)?")
            need_slash = True
    out.append("$")
    return re.compile("".join(out)), include


def _glob_segment(seg: str) -> str:
    out, i, n, escape = [], 0, len(seg), False
    while i < n:
        c = seg[i]
        i += 1
        if escape:
            out.append(re.escape(c))
            escape = False
        elif c == "\\":
            escape = True
        elif c == "*":
            out.append(r"[^/]*")
        elif c == "?":
            out.append(r"[^/]")
        elif c == "[":
            j = i
            if j < n and seg[j] in "!^":
                j += 1
            if j < n and seg[j] == "]":
                j += 1
            while j < n and seg[j] != "]":
                j += 1
            if j < n:
                body = seg[i:j]
                i = j + 1
                neg = body[:1] in ("!", "^")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            else:
                out.append(re.escape(c))
        else:
            out.append(re.escape(c))
    return "".join(out)


def read_comfyignore(root: Path = ROOT) -> List[str]:
    """The .comfyignore patterns as comfy-cli reads them (stripped; blank and '#' lines dropped)."""
    path = root / ".comfyignore"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ignored(rel_path: str, patterns: Sequence[str]) -> bool:
    """pathspec's PathSpec.match_file: the last pattern that matches decides."""
    result = False
    for pattern in patterns:
        regex, include = gitwildmatch(pattern)
        if regex is not None and regex.match(rel_path):
            result = include
    return result


def tracked_files(root: Path = ROOT) -> List[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def comfy_includes(root: Path = ROOT) -> List[str]:
    import tomllib

    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data.get("tool", {}).get("comfy", {}).get("includes", []))


def archive_files(root: Path = ROOT, tracked: Optional[Iterable[str]] = None,
                  patterns: Optional[Sequence[str]] = None, includes: Optional[Sequence[str]] = None) -> List[str]:
    """The paths ``comfy node publish`` zips (comfy_cli.file_utils.zip_files, in a git checkout), sorted."""
    patterns = read_comfyignore(root) if patterns is None else list(patterns)
    includes = comfy_includes(root) if includes is None else list(includes)
    prefixes = [p.lstrip("/").replace("\\", "/").rstrip("/") for p in includes]

    def forced(rel: str) -> bool:
        return any(rel == p or rel.startswith(p + "/") for p in prefixes if p)

    def skip(rel: str) -> bool:
        return not forced(rel) and ignored(rel, patterns)

    files = set()
    for rel in (tracked_files(root) if tracked is None else tracked):
        rel = rel.replace("\\", "/")
        if not skip(rel) and (root / rel).exists():
            files.add(rel)
    for prefix in prefixes:  # includes: walked on disk, tracked or not, .comfyignore not applied below them
        base = root / prefix
        if base.is_file():
            files.add(prefix)
        elif base.is_dir():
            files.update(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return sorted(files)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.text.strip()[:120]}"


def _semicolon_lines(source: str) -> List[int]:
    """Lines where ';' joins two statements (ruff E702)."""
    lines = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return lines
    for k, tok in enumerate(tokens):
        if tok.type == tokenize.OP and tok.string == ";":
            nxt = tokens[k + 1] if k + 1 < len(tokens) else None
            if nxt is not None and nxt.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT,
                                                    tokenize.ENDMARKER):
                lines.append(tok.start[0])
    return lines


def scan_text(rel_path: str, text: str) -> List[Finding]:
    findings = []
    lines = text.splitlines()
    for rule, regexes in _COMPILED.items():
        hit_lines = set()
        for regex in regexes:
            for m in regex.finditer(text):
                hit_lines.add(text.count("\n", 0, m.start()) + 1)
        findings += [Finding(rel_path, n, rule, lines[n - 1] if n <= len(lines) else "") for n in sorted(hit_lines)]
    findings += [Finding(rel_path, n, "ruff_E702", lines[n - 1]) for n in _semicolon_lines(text)]
    return findings


def scan(root: Path = ROOT, files: Optional[Sequence[str]] = None) -> List[Finding]:
    """Every finding in the archive's files."""
    findings = []
    for rel in archive_files(root) if files is None else files:
        if rel.lower().endswith(VENDORED_SUFFIXES) or "node_modules/" in rel or ".min." in rel:
            findings.append(Finding(rel, 0, "vendored_unknown", "a script or binary of another language"))
        elif rel.endswith(".py"):
            findings += scan_text(rel, (root / rel).read_text(encoding="utf-8", errors="replace"))
    return findings


def split_allowed(findings: Sequence[Finding]) -> Tuple[List[Finding], List[Finding]]:
    allowed = {(a.path, a.rule) for a in ALLOWED}
    ok = [f for f in findings if (f.path, f.rule) in allowed]
    bad = [f for f in findings if (f.path, f.rule) not in allowed]
    return ok, bad


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", action="store_true", help="list the archive's files and exit")
    args = parser.parse_args(argv)
    files = archive_files()
    if args.files:
        print("\n".join(files))
        return 0
    ok, bad = split_allowed(scan(files=files))
    print(f"{len(files)} files in the archive; {len(ok) + len(bad)} findings, {len(ok)} allowed (ALLOWED, README).")
    for f in ok:
        print(f"  allowed  {f}")
    for f in bad:
        print(f"  FINDING  {f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
