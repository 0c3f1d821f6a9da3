"""Issue #17 (2): every runnable shell block in README.md and docs/*.md runs as written.

A block is runnable when its info string is ``bash``/``console``/``sh`` and it has no ``# not run`` line; one
command is skipped when its comment says ``not run: <reason>`` (GPU, a long run, a browser, a Ray cluster).
Optional parts in brackets (``[--workers 2]``) are not run, but their option names must exist.
Commands run in process (typer's CliRunner), in order, in a temporary folder laid out with the names the docs
use (``ws``, ``photos/``, ``selfie.jpg``, ...) made from ../shared/data; ``~`` is that folder and
``../shared/data`` is the test data. A command fails the test on a non-zero exit or "No such option/command".
README.md starts from an empty folder (its tour makes the workspace); each docs/*.md page starts from a copy of a
prepared, curated workspace (``ws``, also $FACESET_WORKSPACE) plus two exports under ``exports/``.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RUNNABLE = {"bash", "console", "sh", "shell"}
SETUP_LINES = {". .venv/bin/activate", "source .venv/bin/activate"}  # harmless shell setup, not run
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
NOT_RUN = re.compile(r"\bnot run\b:?\s*(.*)", re.I)


@dataclass
class Cmd:
    doc: str
    line: int
    text: str
    argv: list[str]
    optional: list[list[str]]  # bracketed parts: option names are checked, not run
    skip: str | None  # reason, when marked "not run"


def _scan(line: str) -> tuple[str, list[str], str]:
    """Split one logical line into (commands with ';'/'&&' as NUL, bracketed parts, comment), quote-aware."""
    main, opts, comment = [], [], ""
    quote, depth, cur = None, 0, None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            (cur if depth else main).append(c)
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
            (cur if depth else main).append(c)
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            comment = line[i + 1:].strip()
            break
        elif c == "[" and (i == 0 or line[i - 1].isspace()):
            depth += 1
            cur = []
        elif c == "]" and depth:
            depth -= 1
            opts.append("".join(cur))
            cur = None
        elif depth:
            cur.append(c)
        elif c == ";":
            main.append("\0")
        elif line.startswith("&&", i):
            main.append("\0")
            i += 1
        else:
            main.append(c)
        i += 1
    return "".join(main), opts, comment


def shell_blocks(text: str):
    """(first line number, info string, body) of every fenced block."""
    for m in FENCE.finditer(text):
        yield text[: m.start()].count("\n") + 2, m.group(1).lower(), m.group(2)


def commands_in(text: str, doc: str = "") -> list[Cmd]:
    """Every command of the runnable shell blocks, in order (block-level `# not run` blocks left out)."""
    out = []
    for start, info, body in shell_blocks(text):
        if info not in RUNNABLE:
            continue
        lines = body.splitlines()
        if any(re.match(r"\s*#\s*not run\b", ln, re.I) for ln in lines):
            continue
        i = 0
        while i < len(lines):
            n, ln = start + i, lines[i]
            while ln.rstrip().endswith("\\") and i + 1 < len(lines):  # continuation lines
                i += 1
                ln = ln.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            ln = re.sub(r"^\s*\$\s+", "", ln)  # console prompts
            main, opts, comment = _scan(ln)
            m = NOT_RUN.search(comment)
            skip = (m.group(1).strip(" )") or "marked not run") if m else None
            for part in main.split("\0"):
                if not part.strip() or part.strip() in SETUP_LINES:
                    continue
                out.append(Cmd(doc, n, part.strip(), shlex.split(part), [shlex.split(o) for o in opts], skip))
    return out


def faceset_commands_in(text: str, include_skipped: bool = False):
    """(command name as `faceset NAME [SUB]`, Cmd) of the faceset commands in ``text``'s shell blocks,
    also blocks marked `# not run` when ``include_skipped``."""
    from typer.main import get_command

    from faceset.cli import app

    root = get_command(app)
    if include_skipped:  # blocks marked "# not run" count as documentation too
        text = re.sub(r"^(\s*)#\s*not run\b.*$", "", text, flags=re.M | re.I)
    for c in commands_in(text):
        if not c.argv or c.argv[0] != "faceset":
            continue
        words = [w for w in c.argv[1:] if not w.startswith("-")][:2]
        group = root.commands.get(words[0]) if words else None
        if group is not None and hasattr(group, "commands") and len(words) > 1 and words[1] in group.commands:
            yield f"{words[0]} {words[1]}", c
        elif words:
            yield words[0], c


# -- the folder the docs talk about ---------------------------------------------------------------------------------

TEAM = {  # gender -> (identity, how many photos)
    "male": [("barack_obama", 2), ("george_clooney", 2)],
    "female": [("angelina_jolie", 2), ("katy_perry", 2)],
}


def _photos(data: Path, who: str, n: int) -> list[Path]:
    return sorted(p for p in (data / "identities" / who).iterdir() if p.suffix.lower() in (".jpg", ".png"))[:n]


def _lay_out(world: Path, data: Path) -> None:
    """Files and folders named as in the docs, symlinked (or packed) from the test data."""
    team = world / "photos" / "team"
    for gender, people in TEAM.items():
        (team / gender).mkdir(parents=True)
        for who, n in people:
            for p in _photos(data, who, n):
                (team / gender / f"{who}-{p.name}").symlink_to(p)
    (team / "male" / "cat.jpg").symlink_to(data / "nonface" / "pets" / "cat.4001.jpg")  # a pet
    (team / "female" / "couple.jpg").symlink_to(data / "groups" / "couple.jpg")  # a group shot
    utk_rows = [r for r in csv.DictReader(open(data / "utkface" / "labels.csv", newline="", encoding="utf-8"))
                if r["age"].isdigit() and 20 <= int(r["age"]) <= 60 and r["gender"] in ("male", "female")]
    utk = [data / "utkface" / r["file"] for r in utk_rows[:: max(1, len(utk_rows) // 12)][:12]]
    for d in (world / "utk", world / "utkface" / "images", world / "chips"):
        d.mkdir(parents=True)
        for p in utk:
            (d / p.name).symlink_to(p)
    (world / "photos" / "alice").mkdir()
    (world / "photos" / "alice" / "a.jpg").symlink_to(_photos(data, "matt_damon", 1)[0])
    extra = {"jennifer_aniston": "female", "matt_damon": "male", "elon_musk": "male", "marissa_mayer": "female"}
    with zipfile.ZipFile(world / "team.zip", "w") as z:
        for who in extra:
            p = _photos(data, who, 1)[0]
            z.write(p, f"{extra[who]}/{who}-{p.name}")
    man = world / "manifest"
    man.mkdir()
    for name in ("manifest.csv", "list.csv"):
        with open(world / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "gender", "age"])
            for who, gender in extra.items():
                p = _photos(data, who, 2)[-1]
                (man / f"{who}-{p.name}").exists() or (man / f"{who}-{p.name}").symlink_to(p)
                w.writerow([f"manifest/{who}-{p.name}", gender, "40"])
    shutil.copy(world / "team.zip", world / "friends.zip")
    with tarfile.open(world / "scans.tar.gz", "w:gz") as t:
        t.add(_photos(data, "sundar_pichai", 1)[0], "sundar.jpg")
    for name, src in {"selfie.jpg": _photos(data, "barack_obama", 4)[-1],
                      "another-of-them.jpg": _photos(data, "barack_obama", 3)[-1],
                      "photo.jpg": _photos(data, "katy_perry", 3)[-1], "photo1.jpg": _photos(data, "joe_biden", 2)[-1],
                      "photo2.png": data / "nonface" / "skimage" / "chelsea.png",
                      "x.jpg": _photos(data, "jeff_bezos", 1)[0],
                      "group.jpg": data / "groups" / "two_people.jpg"}.items():
        (world / name).symlink_to(src)


@pytest.fixture(scope="session")
def docs_template(tmp_path_factory, data_dir) -> Path:
    """The laid-out folder, plus ``prepared/``: a curated workspace (gender labels); exports are made per copy."""
    from faceset import init_workspace
    from faceset.curate import assign_splits, cluster_people, find_duplicates
    from faceset.ingest import ingest
    from faceset.scan import scan

    world = tmp_path_factory.mktemp("docs") / "world"
    world.mkdir()
    _lay_out(world, data_dir)
    prep = tmp_path_factory.mktemp("docs_prepared")
    w = init_workspace(prep / "ws")
    ingest(w, [world / "photos" / "team"], license="test-only", consent="consent", labels="folder:gender",
           progress=False)
    ingest(w, [world / "utk"], license="test-only", consent="research_exemption", labels="utkface", progress=False)
    scan(w, workers=2, progress=False)
    find_duplicates(w, progress=False)
    cluster_people(w)
    assign_splits(w, label="gender")
    w.close()
    return world, prep


def _world(tmp_path: Path, template, prepared: bool) -> Path:
    world, prep = template
    dst = tmp_path / "world"
    shutil.copytree(world, dst, symlinks=True)
    if prepared:
        from faceset import open_workspace
        from faceset.export import export

        shutil.copytree(prep / "ws", dst / "ws")
        # An export is owned by one workspace at one path (a copy never rewrites the original's
        # exports), so each copy makes its own rather than copying the template's.
        w = open_workspace(dst / "ws")
        for name in ("gender", "other"):
            export(w, dst / "exports" / name, label="gender", progress=False)
        w.close()
    return dst


def _rewrite(arg: str, world: Path, data: Path) -> str:
    if arg.startswith("~/"):
        return str(world / arg[2:])
    if arg.startswith("../shared/data"):
        return str(data) + arg[len("../shared/data"):]
    if arg.startswith("/tmp/"):
        return str(world / arg[1:])
    return "ws" if arg == "WS" else arg


def _check_optional(cmd: Cmd) -> None:
    """Bracketed options must exist on the command (they are shown, so they must parse)."""
    from typer.main import get_command

    from faceset.cli import app

    node = get_command(app)
    for w in cmd.argv[1:]:
        if w.startswith("-") or not hasattr(node, "commands") or w not in node.commands:
            break
        node = node.commands[w]
    known = {o for p in node.params for o in getattr(p, "opts", [])}
    for part in cmd.optional:
        for w in part:
            if w.startswith("-"):
                assert w in known, f"{cmd.doc}:{cmd.line}: `{cmd.text}` shows [{' '.join(part)}]: no such option {w}"


def _run_doc(doc: Path, world: Path, data: Path) -> list[str]:
    from typer.testing import CliRunner

    from faceset.cli import app

    cmds = commands_in(doc.read_text(encoding="utf-8"), doc.name)
    ran, skipped = [], []
    runner = CliRunner()
    env = {"FACESET_WORKSPACE": str(world / "ws"), "COLUMNS": "80", "FACESET_DEBUG": "1"}
    old = os.getcwd()
    os.chdir(world)
    try:
        for c in cmds:
            where = f"{doc.name}:{c.line}: `{c.text}`"
            if c.argv[0] != "faceset":
                raise AssertionError(f"{where}: not a faceset command: mark it `# not run: <reason>`")
            if c.argv[0] == "faceset":
                _check_optional(c)
            if c.skip:
                skipped.append(f"{where} ({c.skip})")
                continue
            argv = [_rewrite(a, world, data) for a in c.argv[1:]]
            t0 = time.monotonic()
            res = runner.invoke(app, argv, env=env, terminal_width=80)
            out = res.output
            assert "No such option" not in out and "No such command" not in out, f"{where}\n{out[-3000:]}"
            assert res.exit_code == 0, f"{where} exited {res.exit_code}\n{out[-3000:]}"
            ran.append(f"{time.monotonic() - t0:5.1f} s  {c.text}")
    finally:
        os.chdir(old)
    return ran, skipped


def test_block_parser():
    text = ("```bash\n# not run\nmake demo\n```\n\n```console\n$ faceset scan -w ws [--engine ray] [--workers 2]  # x\n"
            "faceset label conflicts -w ws; faceset label noise -w ws --label gender\n"
            "faceset export-onnx m && faceset predict m x.jpg --runtime onnx\n"
            "faceset build a \\\n    -o out   # rerun: not run: long\n```\n```python\nfaceset = 1\n```\n")
    cmds = commands_in(text)
    assert [c.argv[:3] for c in cmds] == [["faceset", "scan", "-w"], ["faceset", "label", "conflicts"],
                                          ["faceset", "label", "noise"], ["faceset", "export-onnx", "m"],
                                          ["faceset", "predict", "m"], ["faceset", "build", "a"]]
    assert cmds[0].optional == [["--engine", "ray"], ["--workers", "2"]]
    assert cmds[0].argv == ["faceset", "scan", "-w", "ws"]
    assert cmds[-1].argv == ["faceset", "build", "a", "-o", "out"] and cmds[-1].skip == "long"
    assert cmds[0].skip is None


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_doc_commands_run(doc, docs_template, data_dir, tmp_path):
    if not commands_in(doc.read_text(encoding="utf-8")):
        pytest.skip(f"{doc.name}: no runnable shell block")
    world = _world(tmp_path, docs_template, prepared=doc != README)
    ran, skipped = _run_doc(doc, world, data_dir)
    print(f"{doc.name}: ran {len(ran)}, skipped {len(skipped)}:", *ran, *skipped, sep="\n  ")
    assert ran
