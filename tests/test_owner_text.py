"""What the debugger's header says of a run's owner ("owner: ..."): the process that drives it, and for a
finished run that there is none because it is finished (not "nobody", which reads as an orphaned run)."""
from __future__ import annotations

import nbflow
from nbflow.notebook.controller import Controller


def test_a_finished_run_has_no_owner_because_it_is_finished(db_url: str) -> None:
    wf = nbflow.Workflow("owner_done", store=db_url)

    @wf.step
    def one() -> int:
        return 1

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    owner = Controller(run).state()["summary"]["owner"]
    assert owner["text"] == "none: the run is finished" and owner["alive"] is False


def test_a_running_run_names_the_process_that_drives_it(db_url: str) -> None:
    wf = nbflow.Workflow("owner_live", store=db_url)

    @wf.step
    def one() -> int:
        return 1

    run = wf.run(breakpoints=["one"])
    assert run.wait(timeout=30) == "paused"
    text = Controller(run).state()["summary"]["owner"]["text"]
    assert text.startswith("pid ") and " on " in text
    run.cancel()
