"""Keys keep their type: an instance's key is what the key function returned (an int stays an int) in
every Python view, ``ctx.key`` and the widget; text still addresses it (``"enrich:17"``, ``key="17"``),
and ``-o json`` prints the text, as it always has."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import nbflow
from nbflow import StepContext, Store, Workflow
from nbflow.cli import cli

WAIT_S = 30
IDS = [3, 17, 42]


def orders(db_url: str, key: Any = lambda item: item["id"], name: str = "orders") -> Workflow:
    """load -> enrich (a foreach keyed by *key*), whose output is the ``ctx.key`` it saw and its type."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load() -> list[dict[str, int]]:
        return [{"id": i} for i in IDS]

    @wf.foreach("load", key=key)
    def enrich(item: dict[str, int], ctx: StepContext) -> list[Any]:
        return [ctx.key, type(ctx.key).__name__]

    return wf


def paused_at_17(db_url: str, **kwargs: Any) -> nbflow.Run:
    run = orders(db_url, **kwargs).run(breakpoints=["enrich:17"])
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def invoke(db_url: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ------------------------------------------------------------------ Python views
def test_instance_views_give_the_keys_the_key_function_returned(db_url: str) -> None:
    run = orders(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    views = run.instances("enrich")
    assert [v.key for v in views] == IDS
    assert all(type(v.key) is int for v in views)
    assert [v.key_text for v in views] == ["3", "17", "42"]
    assert [v.label for v in views] == ["enrich:3", "enrich:17", "enrich:42"]
    assert next(v for v in views if v.key == 17).item == 1


def test_an_int_key_and_its_text_address_the_same_instance(db_url: str) -> None:
    run = paused_at_17(db_url)  # "enrich:17": a breakpoint written as text catches the int key 17

    by_int, by_text = run.instance("enrich", key=17), run.instance("enrich", key="17")
    assert by_int == by_text and by_int.status == "paused" and by_int.key == 17
    run.resume("enrich", key=17)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.instance("enrich", key="17").output == [17, "int"]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_ctx_key_inside_the_step_is_an_int(db_url: str, executor: str) -> None:
    run = orders(db_url).run(executor=executor)
    assert run.wait(timeout=WAIT_S) == "succeeded"

    assert run.output("enrich") == [[i, "int"] for i in IDS]


def test_a_string_key_stays_a_string(db_url: str) -> None:
    run = orders(db_url, key=lambda item: str(item["id"])).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    assert [v.key for v in run.instances("enrich")] == ["3", "17", "42"]
    assert run.output("enrich") == [[str(i), "str"] for i in IDS]
    assert run.instance("enrich", key="17").item == 1


def test_without_a_key_function_the_key_is_the_items_index(db_url: str) -> None:
    run = orders(db_url, key=None).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    assert [v.key for v in run.instances("enrich")] == [0, 1, 2]
    assert run.output("enrich") == [[0, "int"], [1, "int"], [2, "int"]]


def test_a_tuple_key_comes_back_a_tuple_and_is_addressed_by_its_text(db_url: str) -> None:
    run = orders(db_url, key=lambda item: ("EU", item["id"])).run(breakpoints=["enrich:('EU', 17)"])
    assert run.wait(timeout=WAIT_S) == "paused"

    assert [v.key for v in run.instances("enrich")] == [("EU", 3), ("EU", 17), ("EU", 42)]
    assert run.instance("enrich", key=("EU", 17)).status == "paused"
    run.resume("enrich", key=("EU", 17))
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("enrich")[1] == [("EU", 17), "tuple"]


def test_a_datetime_key_comes_back_a_datetime(db_url: str) -> None:
    day = dt.date(2025, 1, 1)
    run = orders(db_url, key=lambda item: day + dt.timedelta(days=item["id"])).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    assert [v.key for v in run.instances("enrich")] == [day + dt.timedelta(days=i) for i in IDS]
    assert run.instance("enrich", key="2025-01-18").item == 1


# ------------------------------------------------------------------ keys that are not valid UTF-8
FILES = ["menu.txt", "caf\udce9.txt"]
"""What ``os.listdir`` gives for a folder holding a file whose name has the Latin-1 byte 0xe9."""
CAFE_TEXT = "caf\\udce9.txt"
"""Its text, as ``-o json`` prints it and addresses are written: the lone surrogate backslash-escaped."""


def files(db_url: str) -> Workflow:
    """names -> size, a foreach keyed by the file names themselves."""
    wf = Workflow("files", store=db_url)

    @wf.step
    def names() -> list[str]:
        return FILES

    @wf.foreach("names", key=lambda name: name)
    def size(item: str, ctx: StepContext) -> bool:
        return ctx.key == item

    return wf


def test_a_foreach_keyed_by_undecodable_file_names_succeeds_and_keeps_the_names(db_url: str) -> None:
    run = files(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    views = run.instances("size")
    assert [v.key for v in views] == FILES
    assert [v.key_text for v in views] == ["menu.txt", CAFE_TEXT]
    assert run.output("size") == [True, True]


def test_show_json_prints_an_undecodable_key_as_its_escaped_text(db_url: str) -> None:
    run = files(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"

    result = CliRunner().invoke(cli, ["--db", db_url, "show", run.id, "-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the JSON output")

    view = json.loads(result.stdout_bytes.decode("utf-8"), parse_constant=refuse)
    assert [i["key"] for i in view["instances"] if i["step"] == "size"] == ["menu.txt", CAFE_TEXT]


def test_an_undecodable_key_is_addressed_by_its_escaped_text(db_url: str) -> None:
    run = files(db_url).run(breakpoints=[f"size:{CAFE_TEXT}"])
    assert run.wait(timeout=WAIT_S) == "paused"

    held = run.instance("size", key=CAFE_TEXT)
    assert (held.status, held.key) == ("paused", FILES[1])
    assert run.instance("size", key=FILES[1]) == held  # the name as os.listdir gave it addresses it too
    detail = invoke(db_url, "show", run.id, f"size:{CAFE_TEXT}", "-o", "json")
    assert (detail["key"], detail["status"]) == (CAFE_TEXT, "paused")
    run.resume("size", key=CAFE_TEXT)
    assert run.wait(timeout=WAIT_S) == "succeeded"


def test_history_events_carry_the_typed_key(db_url: str) -> None:
    run = paused_at_17(db_url)

    paused = [e for e in run.history() if e.kind == "paused"]
    assert [(e.step, e.key, e.key_text) for e in paused] == [("enrich", 17, "17")]


def test_keys_read_back_typed_from_a_fresh_handle_on_the_store(db_url: str) -> None:
    """What another process reading the store sees: the types come from the store, not from memory."""
    run = orders(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    fresh = Store(db_url)
    try:
        assert [v.key for v in nbflow.Run(fresh, run.id).instances("enrich")] == IDS
    finally:
        fresh.dispose()


# ------------------------------------------------------------------ JSON keeps the text
def test_show_json_keeps_text_keys(db_url: str) -> None:
    run = paused_at_17(db_url)

    view = invoke(db_url, "show", run.id, "-o", "json")
    assert [(i["step"], i["key"]) for i in view["instances"]] == [
        ("load", None), ("enrich", "3"), ("enrich", "17"), ("enrich", "42"),
    ]
    assert [(b["key"], b["holding"]) for b in view["breakpoints"]] == [("17", ["17"])]


def test_history_json_keeps_text_keys(db_url: str) -> None:
    run = paused_at_17(db_url)

    events = invoke(db_url, "history", run.id, "-o", "json")
    assert [e["key"] for e in events if e["kind"] == "paused"] == ["17"]


def test_dead_letters_json_keeps_text_keys(db_url: str) -> None:
    wf = Workflow("letters", store=db_url)

    @wf.step
    def load() -> list[int]:
        return IDS

    @wf.foreach("load", key=lambda item: item, on_item_error="continue")
    def charge(item: int) -> int:
        if item == 17:
            raise ValueError("card declined")
        return item

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert [v.key for v in run.dead_letters("charge")] == [17]

    letters = invoke(db_url, "dead-letters", run.id, "-o", "json")
    assert [d["key"] for d in letters] == ["17"]


# ------------------------------------------------------------------ the widget
@pytest.fixture
def widget(widgets: Any) -> Any:
    """A widget on a run that does not refresh itself (the test reads its traits as they are)."""
    return lambda run: widgets(run, live=False)


def test_the_widget_rows_show_the_users_int_keys(db_url: str, widget: Any) -> None:
    w = widget(paused_at_17(db_url))

    assert w.selected_step == "enrich"
    assert [r["key"] for r in w.instances["rows"]] == [17]  # the table opens on what needs a person
    w.handle_message({"action": "filter", "status": ""})
    assert [r["key"] for r in w.instances["rows"]] == IDS
    w.handle_message({"action": "select_instance", "step": "enrich", "key": 17})  # as the row sends it back
    assert w.selected == {"step": "enrich", "key": 17}
    assert (w.detail["key"], w.detail["status"]) == (17, "paused")


def test_the_widget_resumes_the_int_key_its_row_sends_back(db_url: str, widget: Any) -> None:
    run = paused_at_17(db_url)
    w = widget(run)

    w.handle_message({"action": "resume", "step": "enrich", "keys": [17]})

    assert w.message["ok"] is True, w.message
    assert run.wait(timeout=WAIT_S) == "succeeded"


def test_the_widget_rows_keep_string_keys_strings_and_show_other_keys_as_text(db_url: str, widget: Any) -> None:
    strings = orders(db_url, key=lambda item: str(item["id"]), name="strings").run(breakpoints=["enrich"])
    tuples = orders(db_url, key=lambda item: ("EU", item["id"]), name="tuples").run(breakpoints=["enrich"])
    assert strings.wait(timeout=WAIT_S) == tuples.wait(timeout=WAIT_S) == "paused"

    assert [r["key"] for r in widget(strings).instances["rows"]] == ["3", "17", "42"]
    assert [r["key"] for r in widget(tuples).instances["rows"]] == ["('EU', 3)", "('EU', 17)", "('EU', 42)"]


# ------------------------------------------------------------------ stores written before keys kept their type
def test_a_run_recorded_before_the_upgrade_reads_its_keys_as_text(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    import nbflow.store.store as store_module
    from nbflow.store import schema

    run = orders(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    cfg = Config()
    cfg.set_main_option("script_location", str(store_module.Path(store_module.__file__).with_name("migrations")))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # back to the schema of the nbflow before this one: the typed values go
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    engine.dispose()

    fresh = Store(db_url)  # opening it migrates it again
    try:
        with fresh.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == schema.SCHEMA_HEAD
        assert [v.key for v in nbflow.Run(fresh, run.id).instances("enrich")] == ["3", "17", "42"]
        assert nbflow.Run(fresh, run.id).instance("enrich", key=17).item == 1
    finally:
        fresh.dispose()
