"""Workflow definitions: bad ones are refused with a clear error before anything is written;
good ones may name steps defined later; the version hash follows code and options."""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

import nbflow
from nbflow import CycleError, DefinitionError, Workflow


def _table_counts(db_url: str) -> dict[str, int]:
    """Rows per table that a run (or its pinned code) would write."""
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
            for table in ("runs", "instances", "events", "workflows", "step_code")
        }


def assert_store_untouched(db_url: str) -> None:
    """No run is visible through the API and no table holds a row for one."""
    assert nbflow.runs(db_url) == []
    assert _table_counts(db_url) == {"runs": 0, "instances": 0, "events": 0, "workflows": 0, "step_code": 0}


def version(wf: Workflow) -> str:
    """The version hash a run of *wf* would be pinned to."""
    return Workflow.version_of(wf.definition(wf.plan()))


def test_cycle_is_refused_naming_every_step_in_it(db_url: str) -> None:
    wf = Workflow("cyclic", db_url)

    @wf.step
    def start() -> int:
        return 1

    @wf.step
    def alpha(start: int, gamma: int) -> int:
        return start + gamma

    @wf.step
    def beta(alpha: int) -> int:
        return alpha

    @wf.step
    def gamma(beta: int) -> int:
        return beta

    with pytest.raises(CycleError) as err:
        wf.run()
    message = str(err.value)
    assert "cycle" in message
    for step in ("alpha", "beta", "gamma"):
        assert step in message
    assert "'start'" not in message.split("cycle", 1)[1]  # only the steps of the cycle are blamed
    assert_store_untouched(db_url)


def test_cycle_through_a_foreach_source_is_refused(db_url: str) -> None:
    wf = Workflow("cyclic-foreach", db_url)

    @wf.step
    def report(enrich: list[int]) -> int:
        return sum(enrich)

    @wf.foreach("report")
    def enrich(item: int) -> int:
        return item

    with pytest.raises(CycleError, match="cycle") as err:
        wf.run()
    assert "report" in str(err.value) and "enrich" in str(err.value)
    assert_store_untouched(db_url)


def test_self_cycle_through_after_is_refused(db_url: str) -> None:
    wf = Workflow("self", db_url)

    @wf.step(after=["lonely"])
    def lonely() -> int:
        return 1

    with pytest.raises(CycleError, match=r"cycle.*lonely|lonely.*cycle"):
        wf.run()
    assert_store_untouched(db_url)


def test_unknown_parameter_names_the_step_and_the_parameter(db_url: str) -> None:
    wf = Workflow("unknown-param", db_url)

    @wf.step
    def load() -> list[int]:
        return [1, 2]

    @wf.step
    def total(load: list[int], lode: int) -> int:
        return sum(load) + lode

    with pytest.raises(DefinitionError) as err:
        wf.run(params={"n": 3})
    message = str(err.value)
    assert "'total'" in message
    assert "'lode'" in message
    assert "neither a step nor a run parameter" in message
    assert_store_untouched(db_url)


@pytest.mark.parametrize("name", ["ctx", "item"])
def test_a_step_named_ctx_or_item_is_refused(db_url: str, name: str) -> None:
    wf = Workflow("reserved", db_url)

    def body() -> int:
        return 1

    with pytest.raises(DefinitionError, match=f"a step cannot be named '{name}'.*rename"):
        wf.step(name=name)(body)
    assert wf.steps == {}
    assert_store_untouched(db_url)


def _define_each_kind(wf: Workflow, name: Any) -> list[Callable[[], Any]]:
    """One definition of a step called *name* per way of defining one."""

    def body() -> int:
        return 1

    return [lambda: wf.step(name=name)(body), lambda: wf.foreach("load", name=name)(body),
            lambda: wf.approval(name), lambda: wf.wait(name)]


@pytest.mark.parametrize("kind", range(4), ids=["step", "foreach", "approval", "wait"])
def test_a_step_name_with_a_colon_is_refused_because_step_colon_key_could_not_address_it(
    db_url: str, kind: int
) -> None:
    wf = Workflow("colons", db_url)
    with pytest.raises(DefinitionError, match=r"'load:all' contains ':'.*'step:key'.*rename it without ':'"):
        _define_each_kind(wf, "load:all")[kind]()
    assert wf.steps == {}
    assert_store_untouched(db_url)


@pytest.mark.parametrize("name", ["", "   "])
@pytest.mark.parametrize("kind", range(4), ids=["step", "foreach", "approval", "wait"])
def test_an_empty_or_blank_step_name_is_refused_not_replaced_by_the_function_name(
    db_url: str, name: str, kind: int
) -> None:
    wf = Workflow("blank", db_url)
    with pytest.raises(DefinitionError, match=f"name cannot be empty or blank, got {re.escape(repr(name))}"):
        _define_each_kind(wf, name)[kind]()
    assert wf.steps == {}  # in particular no step named 'body'
    assert_store_untouched(db_url)


@pytest.mark.parametrize("kind", range(4), ids=["step", "foreach", "approval", "wait"])
def test_a_step_name_longer_than_the_store_holds_is_refused(db_url: str, kind: int) -> None:
    wf = Workflow("long_steps", db_url)
    with pytest.raises(DefinitionError, match="is 201 characters long; the store holds at most 200: shorten it"):
        _define_each_kind(wf, "s" * 201)[kind]()
    assert wf.steps == {}
    _define_each_kind(wf, "s" * 200)[0]()  # the longest name that fits is fine
    assert list(wf.steps) == ["s" * 200]
    assert_store_untouched(db_url)


def test_a_step_name_that_is_not_a_string_is_refused(db_url: str) -> None:
    wf = Workflow("typed", db_url)
    with pytest.raises(DefinitionError, match="a step name must be a string, got int 7"):
        _define_each_kind(wf, 7)[0]()
    assert wf.steps == {}


def test_a_workflow_name_longer_than_the_store_holds_is_refused(db_url: str) -> None:
    with pytest.raises(DefinitionError, match=r"workflow name 'wwww.*is 201 characters long.*at most 200: shorten it"):
        Workflow("w" * 201, db_url)
    assert Workflow("w" * 200, db_url).name == "w" * 200
    assert_store_untouched(db_url)


@pytest.mark.parametrize(("param", "receives"), [("load", "the output of step 'load'"), ("ctx", "the step context")])
def test_a_run_parameter_named_after_a_step_or_ctx_is_refused(db_url: str, param: str, receives: str) -> None:
    wf = Workflow("shadowed", db_url)

    @wf.step
    def load() -> list[int]:
        return [1, 2]

    @wf.step
    def total(load: list[int]) -> int:
        return sum(load)

    with pytest.raises(DefinitionError) as err:
        wf.run(params={param: [100]})
    assert f"run parameter {param!r} would never be used" in str(err.value)
    assert receives in str(err.value) and "rename the run parameter" in str(err.value)
    assert_store_untouched(db_url)


@pytest.mark.parametrize("bad", [0, -1, "4", 2.5, True])
def test_max_workers_that_is_not_a_whole_number_of_at_least_one_is_refused(db_url: str, bad: Any) -> None:
    with pytest.raises(nbflow.ExecutorError, match=f"max_workers must be a whole number of at least 1.*got {bad!r}"):
        Workflow("workers", db_url, max_workers=bad)
    wf = Workflow("workers", db_url)

    @wf.step
    def one() -> int:
        return 1

    with pytest.raises(nbflow.ExecutorError, match="max_workers"):
        wf.run(max_workers=bad)
    assert_store_untouched(db_url)


def test_parameter_with_a_default_need_not_be_a_run_parameter(db_url: str) -> None:
    wf = Workflow("defaults", db_url)

    @wf.step
    def scaled(factor: int = 3) -> int:
        return 2 * factor

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("scaled") == 6


def test_step_name_reused_for_another_kind_is_a_duplicate(db_url: str) -> None:
    wf = Workflow("dupe", db_url)

    @wf.step
    def load() -> list[int]:
        return [1, 2, 3]

    @wf.step
    def enrich(load: list[int]) -> int:
        return len(load)

    before = version(wf)
    with pytest.raises(DefinitionError) as err:

        @wf.foreach("load")
        def enrich(item: int) -> int:  # the redefinition is the point
            return item

    message = str(err.value)
    assert "duplicate step" in message
    assert "'enrich'" in message
    assert "task" in message and "foreach" in message
    assert wf.steps["enrich"].kind == "task"  # the refused definition changed nothing
    assert version(wf) == before
    assert_store_untouched(db_url)


def test_redefining_a_step_with_the_same_kind_replaces_it(db_url: str) -> None:
    wf = Workflow("redefine", db_url)

    @wf.step
    def answer() -> int:
        return 1

    first = version(wf)

    @wf.step
    def answer() -> int:  # noqa: F811 - a notebook cell run again
        return 42

    assert version(wf) != first
    assert list(wf.steps) == ["answer"]
    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("answer") == 42


def test_foreach_over_an_unknown_step_is_refused(db_url: str) -> None:
    wf = Workflow("foreach-unknown", db_url)

    @wf.step
    def load() -> list[int]:
        return [1, 2]

    @wf.foreach("lode")
    def enrich(item: int) -> int:
        return item

    with pytest.raises(DefinitionError) as err:
        wf.run()
    message = str(err.value)
    assert "'enrich'" in message and "'lode'" in message
    assert_store_untouched(db_url)


def test_after_naming_an_unknown_step_is_refused(db_url: str) -> None:
    wf = Workflow("after-unknown", db_url)

    @wf.step
    def load() -> int:
        return 1

    @wf.step(after=["setup"])
    def work(load: int) -> int:
        return load

    with pytest.raises(DefinitionError) as err:
        wf.run()
    message = str(err.value)
    assert "'work'" in message and "'setup'" in message
    assert_store_untouched(db_url)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: (lambda *rows: rows), id="args"),
        pytest.param(lambda: (lambda **named: named), id="kwargs"),
    ],
)
def test_star_parameters_are_refused_at_definition(db_url: str, make: Callable[[], Callable[..., Any]]) -> None:
    wf = Workflow("star", db_url)
    fn = make()
    with pytest.raises(DefinitionError, match=r"not supported"):
        wf.step(name="gather")(fn)
    assert "gather" not in wf.steps
    assert_store_untouched(db_url)


def test_dependencies_may_name_a_step_defined_later(db_url: str) -> None:
    wf = Workflow("forward", db_url)

    @wf.step
    def report(enrich: list[int], load: list[int]) -> dict[str, int]:
        return {"rows": len(load), "total": sum(enrich)}

    @wf.foreach("load")
    def enrich(item: int) -> int:
        return item * 10

    @wf.step
    def load(n: int) -> list[int]:
        return list(range(n))

    run = wf.run(params={"n": 4})
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("report") == {"rows": 4, "total": 60}


def _build(retries: int = 0) -> Workflow:
    """The same workflow text every call; options come in as arguments."""
    wf = Workflow("versioned", "sqlite://")

    @wf.step
    def load(n: int) -> list[int]:
        return list(range(n))

    @wf.step(retries=retries)
    def total(load: list[int]) -> int:
        return sum(load)

    return wf


def test_version_is_stable_for_the_same_code_and_options() -> None:
    assert version(_build()) == version(_build())


def test_version_changes_when_options_change() -> None:
    assert version(_build(retries=2)) != version(_build(retries=0))


def test_version_changes_when_code_changes() -> None:
    wf = _build()
    before = version(wf)

    @wf.step
    def total(load: list[int]) -> int:
        return sum(load) * 2

    assert version(wf) != before



def _captured_workflow(db_url: str, offset: int) -> Workflow:
    wf = Workflow("captured", db_url)

    @wf.step
    def total():
        return offset

    return wf


def test_runs_whose_steps_capture_different_values_pin_their_own_code(db_url: str) -> None:
    from nbflow.engine.lifecycle import pinned_workflow

    first = _captured_workflow(db_url, 1).run()
    second = _captured_workflow(db_url, 2).run()
    assert first.wait() == "succeeded" and second.wait() == "succeeded"

    assert first.version != second.version
    pinned = pinned_workflow(second.store, "captured", second.version)
    assert pinned.steps["total"].fn() == 2


# ------------------------------------------------------------------------------------ the stored record
def _stored_text(store: nbflow.Store, workflow: str, version: str) -> str:
    """The definition's JSON text exactly as the workflows table holds it."""
    import sqlalchemy as sa

    from nbflow.store import schema

    with store.engine.connect() as conn:
        text = conn.execute(sa.select(schema.workflows.c.definition).where(
            schema.workflows.c.name == workflow, schema.workflows.c.version == version)).scalar()
    assert isinstance(text, str)
    return text


def _record_workflow(db_url: str) -> Workflow:
    wf = Workflow("record", store=db_url)

    @wf.step(retries=2)
    def load(ctx, scale=2):
        return [1, 2, 3]

    @wf.foreach("load", on_item_error="continue", max_parallel=2)
    def enrich(item, ctx, load):
        return item

    @wf.step(after=["enrich"])
    def total(enrich, factor):
        return sum(enrich) * factor

    return wf


def test_a_stored_definition_is_a_typed_record_that_gives_back_the_json_it_was_stored_as(db_url: str) -> None:
    import json

    from nbflow.definition import Binding, StoredDefinition, StoredStep
    from nbflow.states import StepKind

    wf = _record_workflow(db_url)
    run = wf.run(params={"factor": 10})
    assert run.wait() == "succeeded"
    stored = run.store.definition("record", run.version)
    assert isinstance(stored, StoredDefinition)
    assert stored.name == "record" and stored.order == ("load", "enrich", "total")
    assert stored.edges == (("load", "enrich"), ("enrich", "total"))
    enrich = stored.steps["enrich"]
    assert isinstance(enrich, StoredStep) and enrich.name == "enrich"
    assert enrich.kind is StepKind.FOREACH and enrich.foreach == "load"
    assert enrich.bindings == (Binding("item", "item", "item"), Binding("ctx", "ctx", "ctx"),
                               Binding("load", "step", "load"))
    assert enrich.inputs == ("item", "load")  # every parameter but ctx: what set_inputs may name
    assert enrich.upstream == ("load",) and enrich.continues_on_item_error
    assert enrich.options["max_parallel"] == 2 and enrich.code_sha256 and "def enrich" in enrich.source
    load = stored.steps["load"]
    assert load.kind is StepKind.TASK and load.params == ("ctx", "scale") and load.defaults == ("scale",)
    assert not load.continues_on_item_error and load.options["retries"] == 2
    assert stored.steps["total"].after == ("enrich",) and stored.steps["total"].upstream == ("enrich",)
    assert stored.no_step(run.id, "nope") == f"run {run.id} has no step 'nope'; steps are: load, enrich, total"

    text = _stored_text(run.store, "record", run.version)
    assert json.dumps(stored.as_json()) == text  # the same JSON, key for key, in the same order
    assert StoredDefinition.from_json(json.loads(text)) == stored
    hashed = stored.as_json()
    for step in hashed["steps"].values():
        del step["uses"], step["origins"], step["fingerprint"]  # recorded after the version is taken
    assert Workflow.version_of(hashed) == run.version
    assert run.store.definition("record", run.version) is stored  # parsed once: a version never changes


def test_a_stored_definition_is_read_only(db_url: str) -> None:
    import dataclasses

    run = _record_workflow(db_url).run(params={"factor": 1})
    assert run.wait() == "succeeded"
    stored = run.store.definition("record", run.version)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.order = ()
    with pytest.raises(TypeError):
        stored.steps["load"] = stored.steps["total"]
    with pytest.raises(TypeError):
        stored.steps["load"].options["retries"] = 5


def test_a_definition_stored_by_an_older_nbflow_without_pinning_facts_still_reads() -> None:
    from nbflow.definition import StoredDefinition

    old = {"name": "old", "order": ["a"], "edges": [], "steps": {"a": {
        "kind": "task", "params": ["x"], "defaults": [], "bindings": [["x", "param", "x"]], "foreach": None,
        "after": [], "upstream": [], "options": {"retries": 0}, "source": "def a(x): ...", "key_source": ""}}}
    stored = StoredDefinition.from_json(old)
    a = stored.steps["a"]
    assert a.code_sha256 is None and a.uses == () and a.origins == () and a.inputs == ("x",)
    again = stored.as_json()["steps"]["a"]
    assert {k: v for k, v in again.items() if k not in ("uses", "origins")} == old["steps"]["a"]
