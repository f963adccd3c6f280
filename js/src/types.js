// The shapes the view works with (checked by `npm run typecheck`): the model's traits, as
// nbflow/notebook/controller.py computes them for the widget (nbflow/notebook/widget.py) and for the
// sidebar (labextension/src/model.ts, over POST /nbflow/api/runs/<run>/actions/<name>).
/** @typedef {string | number | null} Key  an instance's key as the rows show it (null: a task's single instance) */
/** @typedef {Record<string, number>} Counts  instances per status */
/** @typedef {string | number | null | undefined} When  an ISO timestamp, or epoch seconds (event data) */

/**
 * @typedef {object} Breakpoint  one breakpoint on a DAG node, with its state in this run
 * @property {number} id
 * @property {Key} [key]  only this key (null: every instance of the step)
 * @property {string} when  "before", "after" or "error"
 * @property {string | null} [condition]  a Python condition on the inputs
 * @property {string} scope  "run" or "workflow"
 * @property {string} state  "hit" (holding instances) or "set"
 * @property {number} held  how many instances it holds
 * @property {string} [label]  the text a person reads in the breakpoints box ("before enrich · hit 3 of >= 3")
 * @property {string} [action]  "pause" or "log" (a logpoint never pauses)
 * @property {string | null} [expression]  a logpoint's expression
 * @property {number | null} [hit_count]  acts from the Nth instance that reaches it on (null: the first)
 * @property {number} [hits]  how many instances reached it in this run
 * @property {boolean} [one_shot]  a step over's breakpoint: removed once it fired
 * @property {string | null} [origin]  what made a one-shot one ("step over enrich:3")
 */

/**
 * @typedef {object} DagNode
 * @property {string} step
 * @property {string} kind  "task", "foreach", "approval" or "wait"
 * @property {Counts} counts
 * @property {number} total
 * @property {string} status  its colour: nbflow.views.node_status of the counts, computed in Python
 * @property {Breakpoint[]} breakpoints
 * @property {{text: string}[]} [uses]  what the step reads from the notebook
 * @property {CodeChange | null} [code_change]  the newest redefinition of the step while the run lives
 */

/** @typedef {{at: string | null, old_version?: string | null, new_version?: string | null, diff: string}} CodeChange  a step's code changed (a hot fix) */

/** @typedef {{nodes: DagNode[], edges: [string, string][]}} Dag */

/**
 * @typedef {object} Summary  the run's header
 * @property {string} [id]
 * @property {string} [workflow]
 * @property {string} [version]
 * @property {string} status
 * @property {boolean} [interrupted]
 * @property {{text?: string}} [owner]
 * @property {{done: number, total: number}} [progress]
 * @property {Counts} counts
 * @property {{enabled: boolean, held?: number}} [break_on_error]  the run's break-on-error flag and how many it holds
 * @property {string | null} [actor]  who this surface acts as (the OS user in the notebook, the Jupyter user in the sidebar)
 * @property {boolean} [kernel]  the view runs in a kernel (the widget): "Debug in a cell" is offered
 * @property {{holding?: Key[], instances?: {step: string, key: Key}[], held?: number} | null} [stepped_over]  the instances fired step overs hold (held_by -1)
 * @property {string | null} [forked_from]  the parent run of a fork
 * @property {boolean} [forkable]  the view's run carries its workflow's code: "Fork from here" can start a fork in this process
 */

/** @typedef {{type: string, message: string, traceback?: string}} ErrorInfo */

/** @typedef {{value?: unknown, text: string, error?: string | null}} WatchCell  one watch column's value on one row */

/**
 * @typedef {object} Pause  what holds a paused or waiting instance (nbflow.states.PauseReason)
 * @property {string} when  before, after, error (paused); approval, signal (waiting)
 * @property {string | null} detail  why, past the when (a condition's error; the signal's name)
 */

/**
 * @typedef {object} InstanceRow  one row of the instance table (nbflow.views.instance_view)
 * @property {string} step
 * @property {Key} key
 * @property {string} status
 * @property {number | null} attempt
 * @property {string | null} pause_reason  "before", "after: ...", "approval", "signal: NAME", ...
 * @property {Pause | null} [pause]  the same, structured (nbflow.states.PauseReason)
 * @property {ErrorInfo | null} error
 * @property {number[]} [held_by]  the ids of the breakpoints holding it (0: break on error)
 * @property {string[]} [verbs]  the verbs its state accepts
 * @property {string | null} started_at
 * @property {string | null} finished_at
 * @property {string | null} next_attempt_at
 * @property {string | null} deadline
 * @property {number | null} [duration_s]  how long its last attempt took
 * @property {WatchCell[]} [watch]  one cell per watch column
 * @property {Record<string, unknown>} [logged]  the newest value each logpoint logged for it, by expression
 * @property {boolean} [code_changed]  its step's code changed after its last attempt started (a hot fix)
 */

/**
 * @typedef {object} InstancePage  one page of the selected step's instances ({} when no step is selected)
 * @property {number} [offset]
 * @property {number} [limit]
 * @property {number} [total]
 * @property {string} [status]  the status filter
 * @property {string} [text]  the text filter
 * @property {string} [group]  the error group filter (an id, or "")
 * @property {{by: string, desc: boolean}} [sort]  "item", "duration" or "watch:N"
 * @property {{expr: string}[]} [columns]  the watch columns
 * @property {{index: number, text: string} | null} [watch_filter]  rows whose watch column `index` holds `text`
 * @property {string[]} [inputs]  the step's input names (the bulk edit's choice)
 * @property {InstanceRow[]} [rows]
 */

/**
 * @typedef {object} ErrorGroup  failed and error-paused instances of one step that share a signature
 * @property {string} id
 * @property {number} n
 * @property {string} type
 * @property {string} message
 * @property {string} signature
 * @property {string | null} line
 * @property {number} count
 * @property {Record<string, number>} statuses
 * @property {string | null} [traceback]
 * @property {Key} [first_key]
 * @property {Key[]} keys  the first 20
 * @property {number} [keys_omitted]
 */

/** @typedef {{step: string, total: number, groups: ErrorGroup[], groups_omitted?: number}} Errors  the Errors view of the selected step */

/** @typedef {{kind: "none" | "keys" | "group" | "filter", keys?: Key[], group?: string, count: number, label?: string}} Selection  what the bulk verbs act on */

/** @typedef {{t: string, started: number, succeeded: number, failed: number, retried: number, paused: number, waiting: number}} TimelineBin */

/**
 * @typedef {object} Timeline  durations and attempts over time, for the selected step
 * @property {string} step
 * @property {number} count
 * @property {number | null} median_s
 * @property {number | null} p95_s
 * @property {number | null} max_s
 * @property {number} retries
 * @property {number} pauses
 * @property {number} waits
 * @property {string | null} start
 * @property {string | null} end
 * @property {TimelineBin[]} bins
 */

/** @typedef {{step: string, key: Key}} Selected  the selected instance's address */

/**
 * @typedef {object} EventData  what an event records (the fields the history shows; others are listed as is)
 * @property {number} [attempt]
 * @property {number} [delay]
 * @property {number} [timeout]
 * @property {string} [error]
 * @property {string} [name]
 * @property {string} [reason]
 * @property {string} [when]
 * @property {number[]} [breakpoints]
 * @property {unknown} [output]
 * @property {unknown} [old]
 * @property {unknown} [new]
 * @property {unknown} [payload]
 * @property {string} [previous_status]
 * @property {string} [deadline]
 * @property {string} [comment]
 * @property {number} [items]
 * @property {string} [verb]
 * @property {string} [result]
 * @property {string} [message]
 * @property {string} [expression]  logpoint: the expression
 * @property {unknown} [value]  logpoint: its value (JSON, or its repr)
 * @property {string} [origin]  breakpoint_fired: what made it ("step over enrich:3")
 * @property {string[]} [steps]  code_changed: the steps whose code changed
 * @property {string} [diff]  code_changed: every diff as one text
 */

/** @typedef {{id: number, ts: string | null, kind: string, actor: string | null, data?: EventData & Record<string, unknown>}} HistoryEvent */

/**
 * @typedef {object} Attempt
 * @property {number | null} attempt
 * @property {string | null} started
 * @property {string | null} finished
 * @property {string | null} outcome  the event kind that ended it (null: still running)
 * @property {string | null} error
 */

/**
 * @typedef {object} DetailFields  what nbflow.views.instance_detail adds to the row
 * @property {boolean} [missing]  the instance does not exist yet (then only step and key are set)
 * @property {ErrorInfo | null} error
 * @property {Record<string, unknown>} [inputs]
 * @property {string[]} [readonly_inputs]  inputs that are not editable JSON
 * @property {unknown} [output]
 * @property {boolean} [output_editable]
 * @property {boolean} [has_output]
 * @property {string} [logs]
 * @property {boolean} [logs_truncated]
 * @property {string | null} [token]  a waiting instance's signal token
 * @property {Attempt[]} [attempts]
 * @property {HistoryEvent[]} [history]
 * @property {number} [history_omitted]
 * @property {string | null} [code_diff]  the unified diff of its step's code since its last attempt started
 * @property {{expression: string, value: unknown, when: string, at: string | null, error?: string | null}[]} [logged]  what the logpoints logged for it
 * @property {boolean} [at]  it is shown as it was at the event the scrubber stands at (read-only)
 */

/** @typedef {Omit<InstanceRow, "error" | "logged"> & DetailFields} Detail  the selected instance */

/** @typedef {{seq?: number, ok?: boolean, text?: string | null, action?: string, req?: string | null, pending?: boolean}} Message */

/**
 * @typedef {object} Answer  what an action answers (nbflow.notebook.controller.Controller.act)
 * @property {boolean} ok  false: refused or invalid, and nothing changed
 * @property {string | null} text  what to tell the person (null after navigation)
 * @property {string} action
 * @property {string} [code]  why it was refused (nbflow.verbs.Refusal)
 * @property {{id: number, state: string} | null} [command]  the command it wrote: applied, queued or sent
 * @property {{key: Key, old?: unknown, new?: unknown, error?: string}[]} [preview]  preview_edit: the first results
 * @property {number} [count]  preview_edit: how many instances the edit covers
 * @property {{target: string, code: string, bound: string[]}} [debug_cell]  debug_cell: the cell to insert
 * @property {Fork} [fork]  fork: the run it started
 */

/** @typedef {{run: string, parent: string, from_step: string, keys: Key[] | null}} Fork  a run "Fork from here" started */

/** @typedef {{n: number, id: number, kind: string, step: string | null, key: Key, ts: When}} Mark  an event the scrubber marks (run-level, a pause, a failure) */

/** @typedef {{id: number, n: number, ts: When, kind: string, step: string | null, key: Key, of: number}} At  the event the view stands at (n of `of`) */

/** @typedef {{total: number, marks: Mark[], at: At | null}} History  the scrubber: the run's events, its marks, the event shown (null: live) */

/** @typedef {{step: string, key: Key, before: unknown, after: unknown}} DiffEntry  one item whose output differs (before: the parent's, after: this run's) */

/**
 * @typedef {object} Diff  a fork's "vs parent" panel (nbflow.Run.diff of the parent with this run)
 * @property {string} parent
 * @property {{from_step: string, keys: string[] | null} | null} fork  what the fork re-ran (from its run_created event)
 * @property {{id: string, version: string | number | null, params: unknown}[]} runs  the parent, then this run
 * @property {{changed: number, added: number, removed: number}} counts
 * @property {DiffEntry[]} changed
 * @property {DiffEntry[]} added
 * @property {DiffEntry[]} removed
 * @property {number} [changed_omitted]
 * @property {number} [added_omitted]
 * @property {number} [removed_omitted]
 */

/**
 * @typedef {object} Traits  the model's state (nbflow/notebook/widget.py's RunWidget, labextension/src/model.ts)
 * @property {string} run_id
 * @property {Summary} summary
 * @property {Dag} dag
 * @property {string | null} selected_step
 * @property {InstancePage} instances
 * @property {Selected | null} selected
 * @property {Detail | null} detail
 * @property {Message} message
 * @property {boolean} live
 * @property {Errors | null} [errors]
 * @property {Selection | null} [selection]
 * @property {Timeline | null} [timeline]
 * @property {History} [history]
 * @property {Diff | null} [diff]
 */

/**
 * @typedef {object} Model  the part of anywidget's model API the view uses
 * @property {<N extends keyof Traits>(name: N) => Traits[N]} get
 * @property {(event: string, fn: () => void) => void} on
 * @property {(event: string, fn: () => void) => void} off
 */

/**
 * @typedef {(name: string, msg: unknown, options?: {buffers?: DataView[], signal?: AbortSignal}) => Promise<[unknown, DataView[]]>} Invoke
 *   anywidget's `experimental.invoke`: call a command of the Python widget (`@anywidget.experimental.command`)
 */

/**
 * @typedef {object} Ctx  what every part of the view shares (made by render in widget.js)
 * @property {Model} model
 * @property {HTMLElement} root  the widget's root element
 * @property {(name: string, args: Record<string, unknown>, slot: HTMLElement) => Promise<Answer>} act
 *   an action whose answer shows in `slot`, next to where it was asked for
 * @property {(name: string, args?: Record<string, unknown>) => Promise<Answer>} send  navigation: only a failure shows
 * @property {(name: string, args?: Record<string, unknown>) => Promise<Answer>} ask  a question (preview_edit): the caller shows the answer
 * @property {(m: Message | null) => void} showMessage
 * @property {(slot?: HTMLElement | null) => void} placeMessage
 * @property {(slot: HTMLElement, evenPending?: boolean) => void} clearMessage  clear the message if it shows in `slot`
 * @property {() => Map<number, Breakpoint>} breakpointsById
 * @property {(elem: HTMLElement) => void} stop  keep Jupyter's shortcuts out of a text field
 * @property {import("./dialog.js").Dialogs & {el: HTMLDialogElement}} dialog  the one modal dialog
 * @property {() => boolean} past  the view shows an event of the past (the scrubber): every verb is off
 * @property {(fork: Fork) => void} forked  show the run "Fork from here" started (header.js)
 */

export {};
