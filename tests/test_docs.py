"""The documentation a newcomer follows: README.md links every page of docs/, every relative link in them
resolves (a file, and a heading for an ``#anchor``), and every field docs/json.md documents is in the real
JSON that the real CLI and a real Jupyter server print for a real run (fields may be added, never dropped)."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import Server

import nbflow
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


# ------------------------------------------------------------------------------------------ markdown
def prose(text: str) -> str:
    """*text* without fenced code blocks and inline code, where a ``[x](y)`` is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def headings(text: str) -> list[str]:
    """The heading lines' texts of a markdown page (outside fenced code)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE)


def anchors(text: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as ``-``, and
    ``-1``, ``-2``... after a repeated one."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(text):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The targets of the links and images in *page* that are not web addresses."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose(page.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def field_tables(page: Path) -> dict[str, list[list[str]]]:
    """Per ``## `` section of *page*: its tables, each as the field names in its first column (every
    ``name`` in backticks there, e.g. `dag.nodes[].uses`)."""
    sections: dict[str, list[list[str]]] = {}
    for section in re.split(r"^## ", page.read_text(), flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        tables = re.findall(r"((?:^\|.*\|\n)+)", body, re.MULTILINE)
        first_cells = [[re.split(r"(?<!\\)\|", row)[1] for row in table.splitlines()[2:]] for table in tables]
        names = [[name for cell in cells for name in re.findall(r"`([^`]+)`", cell)] for cells in first_cells]
        if names:
            sections[title.strip()] = names
    return sections


def missing(value: Any, path: str) -> list[str]:
    """Where the dotted *path* (``a.b``, ``a[].b``) is absent from *value*: an array stands for each of
    its elements, and the path must be found at least once (so an output without the example to look
    at fails too)."""
    found, absent = _walk(value, path.replace("[]", "").split("."), path)
    return absent if found else [*absent, f"{path}: nowhere to look"]


def _walk(value: Any, parts: list[str], path: str) -> tuple[int, list[str]]:
    if not parts:
        return 1, []
    if isinstance(value, list):
        found, absent = 0, []
        for element in value:
            n, miss = _walk(element, parts, path)
            found, absent = found + n, absent + miss
        return found, absent
    if not isinstance(value, dict) or parts[0] not in value:
        return 0, [path]
    return _walk(value[parts[0]], parts[1:], path)


# ----------------------------------------------------------------------------------------- links
def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in links(README)}
    assert DOCS, "docs/ has no pages"
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert broken == []


def test_the_link_checker_knows_githubs_heading_ids() -> None:
    page = "# The CLI: `nbflow`\n## `show RUN STEP[:KEY] -o json`\n## Examples\n## Examples\n```\n# not one\n```\n"
    assert anchors(page) == {"the-cli-nbflow", "show-run-stepkey--o-json", "examples", "examples-1"}


# ---------------------------------------------------------------------------- the documented fields
JSON_PAGE = ROOT / "docs" / "json.md"

WHERE: dict[str, list[str]] = {
    "`runs -o json`": [""],
    "`show -o json`": ["", "instances", "dag.nodes[].uses"],
    "`show RUN STEP[:KEY] -o json`": ["", "attempts"],
    "`history -o json`": [""],
    "`breakpoint list -o json`": [""],
    "Operator verbs `-o json`": [""],
    "`signal -o json`": [""],
    "`dead-letters -o json`": [""],
    "`errors -o json`": ["", "groups"],
}
"""Per section of docs/json.md: where each of its tables' fields are in the output (its n-th table: the
n-th path; "" is the object itself, or each element of an array)."""


def docs_run(db: str) -> nbflow.Run:
    """A live run of a small workflow owned by this process: `enrich:3` failed and dead-lettered,
    `report` paused at a breakpoint, `hook` waiting for a signal; `enrich` uses a lock from the notebook."""
    lock = threading.Lock()
    wf = nbflow.Workflow("docs", store=db)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"], on_item_error="continue")
    def enrich(item):
        with lock:
            if item["id"] == 3:
                raise ValueError("row 3 is bad")
            return item["x"] * 10

    @wf.step
    def report(enrich):
        return sum(enrich)

    wf.wait("hook")
    run = wf.run(params={"n": 5}, breakpoints=["report"])
    assert run.wait(timeout=30) == "paused"
    assert run.instance("report").status == "paused" and run.instance("hook").status == "waiting"
    return run


def cli_json(db: str, *args: str) -> Any:
    res = cli(db, *args, "-o", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


OUTPUTS: dict[str, Callable[[str, nbflow.Run], Any]] = {
    "`runs -o json`": lambda db, run: cli_json(db, "runs"),
    "`show -o json`": lambda db, run: cli_json(db, "show", run.id),
    "`show RUN STEP[:KEY] -o json`": lambda db, run: cli_json(db, "show", run.id, "enrich:3"),
    "`history -o json`": lambda db, run: cli_json(db, "history", run.id),
    "`breakpoint list -o json`": lambda db, run: cli_json(db, "breakpoint", "list", "--run", run.id),
    "Operator verbs `-o json`": lambda db, run: cli_json(db, "resume", run.id, "report", "--force"),
    "`signal -o json`": lambda db, run: cli_json(db, "signal", str(run.instance("hook").token), "--payload", "1"),
    "`dead-letters -o json`": lambda db, run: cli_json(db, "dead-letters", run.id),
    "`errors -o json`": lambda db, run: cli_json(db, "errors", run.id, "enrich"),
}
"""How the real CLI prints each documented output for :func:`docs_run`."""


def undocumented_in(output: Any, section: str) -> list[str]:
    tables = field_tables(JSON_PAGE)[section]
    assert len(tables) == len(WHERE[section]), f"{section}: a field table this test does not know where to look"
    return [
        f"{base + '.' if base else ''}{name}: {m}"
        for base, names in zip(WHERE[section], tables)
        for name in names
        for m in missing(output, f"{base}.{name}" if base else name)
    ]


def test_every_json_output_with_a_field_table_is_checked_here() -> None:
    assert sorted(field_tables(JSON_PAGE)) == sorted(OUTPUTS)


@pytest.mark.parametrize("section", list(OUTPUTS))
def test_every_documented_field_is_in_the_real_cli_output(db_url: str, section: str) -> None:
    run = docs_run(db_url)
    output = OUTPUTS[section](db_url, run)
    assert undocumented_in(output, section) == []


# ------------------------------------------------------------------------------ the REST API
REST_PAGE = ROOT / "docs" / "rest.md"


def test_every_documented_field_is_in_the_rest_apis_answers(server: Server) -> None:
    run = docs_run(server.db)
    answers = {
        "`runs -o json`": server.get("runs"),
        "`show -o json`": server.get(f"runs/{run.id}"),
        "`history -o json`": server.get(f"runs/{run.id}/history"),
        "`breakpoint list -o json`": server.get("breakpoints", params={"run": run.id}),
    }
    for section, resp in answers.items():
        assert resp.status_code == 200, (section, resp.text)
        assert undocumented_in(resp.json(), section) == [], section
    detail = server.get(f"runs/{run.id}/instances/enrich/3")
    assert detail.status_code == 200, detail.text
    assert undocumented_in({"run": run.id, **detail.json()}, "`show RUN STEP[:KEY] -o json`") == []
    assert "run" not in detail.json()  # as documented: the CLI's object without `run`


def documented_endpoints() -> list[tuple[str, str]]:
    """(method, path) of each row of docs/rest.md's endpoint table, the query left out."""
    rows = re.findall(r"^\| `(GET|POST|DELETE) (/[^`?]*)", REST_PAGE.read_text(), re.MULTILINE)
    assert len(rows) >= 10, rows
    return rows


def test_every_documented_endpoint_is_served(server: Server) -> None:
    run = docs_run(server.db)
    names = {"RUN": run.id, "STEP": "enrich", "KEY": "0", "TOKEN": "not-a-token"}
    unserved = []
    for method, path in documented_endpoints():
        url = server.url + re.sub(r"\b(RUN|STEP|KEY|TOKEN)\b", lambda m: names[m.group(1)], path)
        body = {} if method == "POST" else None
        resp = requests.request(method, url, headers=server.auth, json=body, timeout=30)
        if resp.status_code in (404, 405):  # no route, or not this method: the page documents what is not there
            unserved.append(f"{method} {path}: {resp.status_code}")
        assert "Traceback" not in resp.text
    assert unserved == []
