"""Opening a store (engine, pragmas, migrations, secret) and the queries every surface shares.

Only a run's scheduler writes instance state (in batches: ``Scheduler._flush`` in :mod:`nbflow.engine.scheduler`);
surfaces write commands and breakpoints through ``nbflow.commands``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.util import asbool

from ..definition import StoredDefinition
from ..errors import StoreError, UnknownRunError
from ..states import InstanceStatus, RunStatus, status_filter
from . import codec, logpoints, schema
from .codec import Artifacts, Encoded, private_dirs

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import SQLCompiler

_CREATED = "nbflow.created_artifacts"
"""Key in a connection's info: the values whose files were created in its :meth:`Store.begin` transaction."""

# The rows reads return. The casts to them: SQLAlchemy types a RowMapping's keys as names or columns, and
# these rows are read by name.
_Row = Mapping[str, Any]
_Rows = list[_Row]

_cache: dict[str, Store] = {}
_cache_lock = threading.Lock()


def _fast_sqlite_binding() -> None:
    """Bind None and bytes without the sqlite3 module's failed adaptation lookups (≈0.5 and 0.8 µs
    a parameter; an instance row has ~20 NULLs: B2 in bench/). Same values bound; set only when
    nobody registered an adapter for these types. Both adapters return their argument unchanged."""
    import sqlite3

    pairs: tuple[tuple[type, Callable[[Any], Any]], ...] = ((type(None), {}.get), (bytes, bytes))
    for tp, identity in pairs:  # C callables: {}.get(None) is None, bytes(b) is b
        if (tp, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(tp, identity)


_fast_sqlite_binding()


def default_url() -> str:
    return os.environ.get("NBFLOW_DB") or "sqlite:///./.nbflow/nbflow.db"


def _sqlite_uri(url: sa.URL) -> bool:
    """True for SQLite's URI form, ``sqlite:///file:path?mode=ro&uri=true`` (the driver's ``uri`` flag)."""
    value = url.query.get("uri")
    try:
        return value is not None and asbool(value[-1] if isinstance(value, tuple) else value)
    except ValueError:  # the driver refuses it too, with its own message
        return False


def _sqlite_path(url: sa.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if not _sqlite_uri(url):
        return Path(url.database).expanduser().resolve()
    if not url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    rest = url.database[len("file:"):]
    if rest.startswith("//"):  # file://host/path: SQLite accepts an empty host or localhost only
        rest = "/" + rest[2:].partition("/")[2]
    return Path(unquote(rest)).expanduser().resolve() if rest and rest != ":memory:" else None


def _with_path(url: sa.URL, path: Path) -> sa.URL:
    """*url* pointing at the absolute *path*, in the form it came in (plain or SQLite URI)."""
    return url.set(database="file:" + quote(str(path)) if _sqlite_uri(url) else str(path))


_SQLITE_TROUBLE = (
    ("file is not a database", ("is not a SQLite database ({error}); point --db or NBFLOW_DB at an nbflow store, "
                                "or move this file away to start a new store there")),
    ("malformed", "is damaged ({error}); restore it from a backup, or move it away to start a new store there"),
    ("readonly", ("is read-only ({error}); running and operating runs writes to the store: make the file and its "
                  "folder writable, or copy the store to a place you can write")),
    ("unable to open", ("cannot be opened ({error}); check that its folder exists and that you may read and write "
                        "there")),
    ("disk i/o error", "cannot be read or written ({error}); check the disk and the file"),
    ("disk is full", "cannot be written ({error}); free some space"),
)
"""SQLite errors that mean the store file itself is unusable, and what to tell the user (a fragment of its message)."""


def error_text(exc: BaseException) -> str:
    """The first line of the driver's message for a database error (SQLAlchemy adds lines with links)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def store_error(where: str, exc: BaseException) -> StoreError | None:
    """A one-line :class:`StoreError` for a database error that makes the store *where* (``the store
    PATH``) unusable, e.g. a corrupt or read-only file, chained to *exc*; None for any other error."""
    text = error_text(exc)
    low = text.lower()
    for fragment, advice in _SQLITE_TROUBLE:
        if fragment in low:
            err = StoreError(f"{where} {advice.format(error='SQLite: ' + text)}")
            err.__cause__ = exc
            return err
    return None


def _check_length(path: Path) -> None:
    """Refuse a SQLite file shorter than its header says (cut by a full disk or a partial copy): SQLite
    itself only notices when a query reaches a missing page, maybe much later. Not while a WAL or a
    journal has content: a checkpoint in progress writes the header before the pages it adds."""
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        with contextlib.suppress(OSError):
            if side.stat().st_size:
                return
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except (FileNotFoundError, NotADirectoryError):
        return
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0") or header[24:28] != header[92:96]:
        return  # not SQLite (it says so when opening), or a size field SQLite would not trust either
    page_size = int.from_bytes(header[16:18], "big")
    expected = (65536 if page_size == 1 else page_size) * int.from_bytes(header[28:32], "big")
    if size < expected:
        raise StoreError(
            f"the store {path} is damaged: it is truncated ({size} bytes of {expected}); restore it from a backup, "
            "or move it away to start a new store there"
        )


def _remove(made: list[Path]) -> None:
    """Undo :meth:`Store._create_file` (newest first): the new file while nothing is in it yet (another
    process that opened it meanwhile has written its header), then the new folders left empty."""
    for p in made:
        with contextlib.suppress(OSError):
            if p.is_dir():
                p.rmdir()
                continue
            wal = p.with_name(p.name + "-wal")
            if p.stat().st_size or (wal.exists() and wal.stat().st_size):
                return  # in use: keep it, and the folders it is in
            for side in (wal, p.with_name(p.name + "-shm"), p.with_name(p.name + "-journal"), p):
                side.unlink(missing_ok=True)


class Store:
    """A connection to one nbflow database plus its artifact folder."""

    def __init__(self, url: str) -> None:
        self._definitions: dict[tuple[str, str], StoredDefinition] = {}  # by (workflow, version)
        parsed = make_url(url)
        path = _sqlite_path(parsed)
        made: list[Path] = []  # what this call created, removed again if the store cannot be opened
        if path is not None:
            made = self._create_file(path, read_only=parsed.query.get("mode") == "ro")
            parsed = _with_path(parsed, path)
            self.artifacts = Artifacts(path.parent / "artifacts")
        else:
            self.artifacts = Artifacts(Path(os.environ.get("NBFLOW_ARTIFACTS", "./.nbflow/artifacts")).resolve())
        self.url = parsed.render_as_string(hide_password=False)
        self.display_url = parsed.render_as_string(hide_password=True)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.where = f"the store {path}" if path is not None else f"the store {self.display_url}"
        try:
            self.engine = self._make_engine(parsed)
            self._migrate()
            self.secret = self._secret()
        except BaseException as exc:
            if hasattr(self, "engine"):
                self.engine.dispose()
            _remove(made)
            if isinstance(exc, sa.exc.DBAPIError):
                raise StoreError(
                    f"cannot open {self.where}: {error_text(exc)}; check the URL, that the database server is running "
                    "and that you may use it"
                ) from exc
            raise

    def _create_file(self, path: Path, read_only: bool) -> list[Path]:
        """Make the SQLite file (owner-only) and its folders unless they exist; return what was made,
        newest first. A path that cannot be a store file is a :class:`StoreError`; nothing is left behind."""
        if path.is_dir():
            raise StoreError(
                f"the store {path} is a folder, not a database file; point --db or NBFLOW_DB at a file, "
                f"e.g. sqlite:///{path / 'nbflow.db'}"
            )
        _check_length(path)
        if read_only:
            if not path.is_file():
                raise StoreError(f"the store {path} does not exist, and mode=ro opens an existing store only; "
                                 "check the path, or drop mode=ro to create a new store")
            return []
        for folder in [path.parent, *path.parent.parents]:
            if folder.is_dir():
                break
            if folder.exists() or folder.is_symlink():
                raise StoreError(
                    f"cannot create the store {path}: {folder} is a file, not a folder; choose a path in a folder"
                )
        made: list[Path] = []
        try:
            private_dirs(path.parent, made)
            if not path.exists():
                try:
                    # The store can make this user run code (pickles, conditions): owner-only.
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                except FileExistsError:  # another process created it first
                    pass
                else:
                    made.insert(0, path)
        except OSError as exc:
            _remove(made)
            raise StoreError(
                f"cannot create the store {path}: {exc.strerror} ({exc.filename}); choose a path you may write"
            ) from exc
        except BaseException:
            _remove(made)
            raise
        return made

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | Store | None = None) -> Store:
        """The store at *url* (a SQLAlchemy URL; None means NBFLOW_DB or ./.nbflow/nbflow.db), shared per process."""
        if isinstance(url, Store):
            return url
        raw = url or default_url()
        key = raw
        try:
            parsed = make_url(raw)
        except (sa.exc.ArgumentError, TypeError, ValueError):
            where = "NBFLOW_DB" if not url and os.environ.get("NBFLOW_DB") else "the store"
            raise StoreError(
                f"{where} must be a SQLAlchemy URL, got {raw!r}; for a SQLite file write sqlite:///path/to/nbflow.db "
                f"(four slashes for an absolute path), for PostgreSQL postgresql+psycopg://user@host/db"
            ) from None
        path = _sqlite_path(parsed)
        if path is not None:
            key = _with_path(parsed, path).render_as_string(hide_password=False)
        with _cache_lock:
            store = _cache.get(key)
            if store is None:
                store = _cache[key] = cls(raw)
            return store

    def _map_errors(self, engine: Engine) -> Engine:
        """Make SQLite's errors about the file itself (corrupt, truncated, read-only...) a one-line
        :class:`StoreError` naming it, wherever they happen: at opening or in a later query."""

        @sa.event.listens_for(engine, "handle_error")
        def _bad_store(ctx: sa.engine.ExceptionContext) -> None:
            err = store_error(self.where, ctx.original_exception)
            if err is not None:
                raise err

        return engine

    def _make_engine(self, url: sa.URL) -> Engine:
        if self.is_sqlite:
            engine = self._map_errors(sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=16
            ))

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                # 1 KiB pages for a new store (an existing one keeps its own): a step's commit writes
                # two pages to the WAL, its instance's and its events', so smaller pages are less to
                # copy, checksum and write, and less memory touched per step: B1 in bench/ went from
                # ~162 to ~142 µs per step against 4 KiB pages, B2 and B3 did not get slower.
                cur.execute("PRAGMA page_size=1024")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                # A 10,000-item fan-out commits tens of thousands of rows at once: keep them in cache.
                cur.execute("PRAGMA cache_size=-65536")
                # Checkpoint (copy the WAL into the database file, with fsyncs) every 10,000 pages of
                # WAL rather than every 1,000: fewer, larger checkpoints; a 1,000-step chain writes
                # ~2,000-4,000 frames (B1 in bench/). The WAL file is cut back to 16 MiB after each.
                cur.execute("PRAGMA wal_autocheckpoint=10000")
                cur.execute("PRAGMA journal_size_limit=16777216")
                cur.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def _migrate(self) -> None:
        with self.engine.connect() as conn:
            current = _revision(conn)
        if current == schema.SCHEMA_HEAD:
            return  # a store at head, the common case: alembic (~0.1 s to import) is not needed
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"{self.where} has schema revision {current!r}, written by a newer nbflow "
                f"(this one knows up to {schema.SCHEMA_HEAD!r}); upgrade nbflow or point NBFLOW_DB elsewhere"
            )
        # Processes opening a fresh store together: one migrates, the others wait for it, then see head.
        engine = self._locking_engine() if self.is_sqlite else self.engine
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262011)"))
                if MigrationContext.configure(conn).get_current_revision() == schema.SCHEMA_HEAD:
                    return
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            if engine is not self.engine:
                engine.dispose()

    def _locking_engine(self) -> Engine:
        """A SQLite engine whose transactions begin with the write lock (``BEGIN IMMEDIATE``, waiting up
        to the busy timeout), for the migration: SQLite's DDL is transactional, so a second process
        waits, then finds the schema at head (SQLAlchemy's recipe for explicit BEGIN with pysqlite)."""
        engine = self._map_errors(sa.create_engine(self.url, connect_args={"timeout": 30}, poolclass=sa.pool.NullPool))

        @sa.event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _secret(self) -> bytes:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == "secret")).first()
            if row is None:
                value = secrets.token_hex(32)
                try:
                    conn.execute(schema.meta.insert().values(key="secret", value=value))
                except sa.exc.IntegrityError:  # another process created it first
                    pass
                else:
                    return value.encode()
        with self.engine.connect() as conn:
            query = sa.select(schema.meta.c.value).where(schema.meta.c.key == "secret")
            stored: str = conn.execute(query).scalar_one()
            return stored.encode()

    # -- values --------------------------------------------------------------------------------
    def encode(self, value: Any, what: str = "value") -> Encoded:
        """Encode a value for storage; a large one goes to a file and its blob row is attached."""
        return self.keep(codec.encode(value, what))

    def keep(self, enc: Encoded) -> Encoded:
        """An encoded value as the store keeps it: a large one moved to the artifact folder and
        replaced by its reference (with the blob row to write); others, and references, unchanged."""
        if enc.codec == codec.REF or len(enc.data) <= codec.LARGE_VALUE_BYTES:
            return enc
        ref, digest, size, created = self.artifacts.put(enc)
        blob = {"hash": digest, "codec": enc.codec, "size": size, "data": None, "path": ref}
        return Encoded(codec.REF, ref.encode(), blob=blob, fresh=created)

    @functools.cached_property
    def blob_insert(self) -> sa.Insert:
        """The INSERT of a blobs row, doing nothing when the hash is there already (values are content-addressed)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(schema.blobs).on_conflict_do_nothing(index_elements=["hash"])
        from sqlalchemy.dialects.sqlite import insert

        return insert(schema.blobs).on_conflict_do_nothing(index_elements=["hash"])

    def write_value(self, conn: Connection, enc: Encoded) -> Encoded:
        """*enc* as the store keeps it (see :meth:`keep`), a large value's blob row written in *conn*'s transaction,
        which must also write the row referencing it. Every writer of a value but the scheduler's flush goes
        through here; in a :meth:`begin` transaction that does not commit, the file it created is removed."""
        enc = self.keep(enc)
        if enc.blob is not None:
            conn.execute(self.blob_insert, enc.blob)
            created = conn.info.get(_CREATED)
            if enc.fresh and created is not None:
                created.append(enc)
        return enc

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction (as ``engine.begin()``) for rows referencing values written with :meth:`write_value`:
        when it does not commit (a refusal, a failure), the artifact files it created are removed again."""
        created: list[Encoded] = []
        try:
            with self.engine.begin() as conn:
                conn.info[_CREATED] = created
                try:
                    yield conn
                finally:
                    conn.info.pop(_CREATED, None)
        except BaseException:
            self.discard(created)
            raise

    def discard(self, encs: Iterable[Encoded]) -> None:
        """Remove the artifact files these values created, unless a committed blob row references one (the
        same content stored by another writer). Called when the rows referencing the values did not commit."""
        digests = {e.blob["hash"] for e in encs if e.fresh and e.blob is not None}
        if not digests:
            return
        hashes = schema.blobs.c.hash
        try:
            with self.engine.connect() as conn:
                kept = set(conn.execute(sa.select(hashes).where(hashes.in_(digests))).scalars())
        except Exception:  # noqa: BLE001 - the store is unreachable: keeping the files is harmless
            return
        for digest in digests - kept:
            self.artifacts.remove(digest)

    def decode(self, codec_name: str | None, data: bytes | None) -> Any:
        if codec_name == codec.REF and data is not None:
            ref = data.decode()
            digest = ref.rsplit("/", 1)[-1]
            with self.engine.connect() as conn:
                real = conn.execute(sa.select(schema.blobs.c.codec).where(schema.blobs.c.hash == digest)).scalar()
            if real is None:
                raise StoreError(f"no blob row for {ref}; the store is incomplete")
            return codec.decode(real, self.artifacts.get(ref))
        return codec.decode(codec_name, data)

    # -- reads -----------------------------------------------------------------------------------
    def run_row(self, run_id: str, conn: Connection | None = None) -> Mapping[str, Any]:
        stmt = sa.select(schema.runs).where(schema.runs.c.id == run_id)
        if conn is None:
            with self.engine.connect() as c:
                row = c.execute(stmt).mappings().first()
        else:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.display_url}; list runs with `nbflow runs`")
        return cast(_Row, row)

    def run_rows(
        self, workflow: str | None = None, status: str | Iterable[str] | None = None, limit: int | None = None
    ) -> list[Mapping[str, Any]]:
        stmt = sa.select(schema.runs).order_by(schema.runs.c.created_at.desc())
        if workflow is not None:
            stmt = stmt.where(schema.runs.c.workflow == workflow)
        wanted = status_filter(status, RunStatus)
        if wanted is not None:
            stmt = stmt.where(schema.runs.c.status.in_(wanted))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return cast(_Rows, list(conn.execute(stmt).mappings()))

    def definition(self, workflow: str, version: str) -> StoredDefinition:
        """The stored definition of *version* of *workflow*, parsed once (a version never changes)."""
        found = self._definitions.get((workflow, version))
        if found is not None:
            return found
        with self.engine.connect() as conn:
            text = conn.execute(
                sa.select(schema.workflows.c.definition).where(
                    schema.workflows.c.name == workflow, schema.workflows.c.version == version
                )
            ).scalar()
        if text is None:
            raise StoreError(f"workflow {workflow!r} version {version} is missing from the store")
        definition = StoredDefinition.from_json(json.loads(text))
        self._definitions[(workflow, version)] = definition
        return definition

    def step_code(self, version: str) -> dict[str, tuple[str, bytes]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.step_code).where(schema.step_code.c.version == version))
            return {r.step: (r.source, r.pickled) for r in rows}

    def has_version(self, workflow: str, version: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(schema.workflows.c.version).where(
                        schema.workflows.c.name == workflow, schema.workflows.c.version == version
                    )
                ).first()
                is not None
            )

    def instance_rows(
        self, run_id: str, step: str | None = None, status: str | Iterable[str] | None = None,
        conn: Connection | None = None, items: Iterable[int] | None = None,
    ) -> list[Mapping[str, Any]]:
        t = schema.instances
        stmt = sa.select(t).where(t.c.run_id == run_id)
        if step is not None:
            stmt = stmt.where(t.c.step == step)
        if items is not None:
            stmt = stmt.where(t.c.item.in_(list(items)))
        wanted = status_filter(status, InstanceStatus)
        if wanted is not None:
            stmt = stmt.where(t.c.status.in_(wanted))
        stmt = stmt.order_by(t.c.step, t.c.item)
        if conn is not None:
            return cast(_Rows, list(conn.execute(stmt).mappings()))
        with self.engine.connect() as c:
            return cast(_Rows, list(c.execute(stmt).mappings()))

    def key_values(self, run_id: str) -> dict[tuple[str, str], tuple[str, bytes]]:
        """(step, key text) -> the key's stored value (codec, bytes), for the instances whose key is not its text."""
        t = schema.instances
        stmt = sa.select(t.c.step, t.c.key, t.c.key_codec, t.c.key_value).where(
            t.c.run_id == run_id, t.c.key_codec.is_not(None)
        )
        with self.engine.connect() as c:
            return {(step, key): (codec_name, data) for step, key, codec_name, data in c.execute(stmt)}

    STATE_COLUMNS = (
        "step", "item", "key", "status", "attempt", "error_type", "error_message", "pause_reason", "held_by",
        "released", "next_attempt_at", "deadline", "started_at", "finished_at", "token", "key_codec", "key_value",
    )

    def instance_state_rows(self, run_id: str) -> Sequence[Any]:
        """Every instance of a run without its values (outputs, inputs, logs): what scheduling needs,
        plus a last column telling whether the row has values to load later. In (step, item) order.
        Read on the DB-API cursor, rows as plain tuples: a takeover reads 10,000 of them (B3 in bench/)."""
        return self.raw_rows(self._state_sql, {"run_id": run_id})

    def raw_rows(self, sql: tuple[str, tuple[str, ...] | None], params: Mapping[str, Any]) -> list[Any]:
        """A statement compiled by :meth:`compiled` run on the driver's cursor, its rows as the driver's
        plain tuples (no SQLAlchemy row objects): for reads of 100,000 rows (B3, frames, time travel)."""
        text, order = sql
        with self.engine.connect() as c:
            raw = c.connection.dbapi_connection
            assert raw is not None  # a connection just checked out of the pool holds its driver's
            cur = raw.cursor()
            try:
                cur.execute(text, tuple(params[k] for k in order) if order is not None else dict(params))
                return cast("list[Any]", cur.fetchall())
            finally:
                cur.close()

    @functools.cached_property
    def _state_sql(self) -> tuple[str, tuple[str, ...] | None]:
        t = schema.instances
        has_values = sa.or_(
            t.c.inputs_codec.is_not(None), t.c.output_codec.is_not(None), t.c.saved_codec.is_not(None),
            t.c.logs.is_not(None), t.c.error_traceback.is_not(None),
        )
        return self.compiled(
            sa.select(*(t.c[n] for n in self.STATE_COLUMNS), has_values)
            .where(t.c.run_id == sa.bindparam("run_id"))
            .order_by(t.c.step, t.c.item)
        )

    def event_rows(
        self, run_id: str, after_id: int = 0, *, step: str | None = None, key: str | None = None,
        kinds: Iterable[str] | None = None, limit: int | None = None,
    ) -> list[Mapping[str, Any]]:
        """The run's events, oldest first, each with ``n``: its 1-based position in the whole history
        (ids are dense per run, ``schema.EVENT_ID_SPAN``). *after_id* is an event id or, below the
        run's range, a position n; *step*, *key* and *kinds* narrow, and *limit* keeps the last N, in
        the query (a 1,000-item run has thousands of events)."""
        t = schema.events
        with self.engine.connect() as conn:
            low, high = self.event_range(run_id, conn)
            where = [t.c.id > (after_id if after_id >= low else low + after_id), t.c.id < high, t.c.run_id == run_id]
            if step is not None:
                where.append(t.c.step == step)
            if key is not None:
                where.append(t.c.key == key)
            if kinds is not None:
                where.append(t.c.kind.in_(list(kinds)))
            stmt = sa.select(t, (t.c.id - low).label("n")).where(*where)
            if limit is None:
                rows = list(conn.execute(stmt.order_by(t.c.id)).mappings())
            else:
                rows = list(conn.execute(stmt.order_by(t.c.id.desc()).limit(limit)).mappings())[::-1]
            return cast(_Rows, logpoints.with_definitions(conn, run_id, low, high, rows))

    def event_kinds(self, run_id: str) -> list[str]:
        """The kinds of event the run's history has, sorted (to tell a mistyped kind from an absent one)."""
        t = schema.events
        with self.engine.connect() as conn:
            low, high = self.event_range(run_id, conn)
            stmt = sa.select(t.c.kind).where(t.c.id > low, t.c.id < high).distinct().order_by(t.c.kind)
            return list(conn.execute(stmt).scalars())

    def event_range(self, run_id: str, conn: Connection, lock: bool = False) -> tuple[int, int]:
        """``(low, high)``: the ids of the run's events lie strictly between (``schema.EVENT_ID_SPAN``);
        an unknown run has an empty range. *lock*: hold the run's row until the transaction ends
        (PostgreSQL; SQLite's write lock already serializes writers)."""
        stmt = sa.select(schema.runs.c.seq).where(schema.runs.c.id == run_id)
        seq = conn.execute(stmt.with_for_update() if lock else stmt).scalar()
        if seq is None:
            return 0, 1
        return seq * schema.EVENT_ID_SPAN, (seq + 1) * schema.EVENT_ID_SPAN

    def last_event_id(self, run_id: str, conn: Connection, lock: bool = False) -> int:
        """The id of the run's newest event, or the bottom of its range when it has none."""
        t = schema.events
        low, high = self.event_range(run_id, conn, lock)
        return conn.execute(sa.select(sa.func.max(t.c.id)).where(t.c.id > low, t.c.id < high)).scalar() or low

    def add_event(
        self, conn: Connection, run_id: str, kind: str, *, step: str | None = None, key: str | None = None,
        actor: str | None = None, data: Mapping[str, Any] | None = None, ts: float,
    ) -> int:
        """Write one event of a run that no scheduler is writing (its creation, a takeover, a refusal
        after it finished), with the run's next id; returns the id. Writers of this kind queue on the
        run's row, so two deliveries to a finished run do not take the same id."""
        from .._util import dumps, jsonable  # _util imports the codec, so this package, first
        event_id = self.last_event_id(run_id, conn, lock=True) + 1
        conn.execute(schema.events.insert().values(
            id=event_id, run_id=run_id, step=step, key=key, kind=kind, actor=actor,
            data=None if data is None else dumps(data, default=jsonable), ts=ts,
        ))
        return event_id

    def breakpoint_rows(self, workflow: str, run_id: str | None = None) -> list[Mapping[str, Any]]:
        """Workflow-scoped breakpoints, plus those of *run_id* when given."""
        t = schema.breakpoints
        scope = t.c.run_id.is_(None) if run_id is None else sa.or_(t.c.run_id.is_(None), t.c.run_id == run_id)
        with self.engine.connect() as conn:
            stmt = sa.select(t).where(t.c.workflow == workflow, scope).order_by(t.c.id)
            return cast(_Rows, list(conn.execute(stmt).mappings()))

    def breakpoint_hits(self, run_id: str) -> dict[int, int]:
        """How many instances of the run reached each breakpoint and matched its condition, by breakpoint id."""
        t = schema.breakpoint_hits
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.breakpoint_id, t.c.hits).where(t.c.run_id == run_id))
            return {r[0]: r[1] for r in rows}

    def signal_rows(self, run_id: str) -> list[Mapping[str, Any]]:
        t = schema.signals
        with self.engine.connect() as conn:
            return cast(_Rows, list(conn.execute(sa.select(t).where(t.c.run_id == run_id)).mappings()))

    def pending_commands(self, run_id: str, conn: Connection) -> list[Mapping[str, Any]]:
        t = schema.commands
        return cast(_Rows, list(
            conn.execute(
                sa.select(t).where(t.c.run_id == run_id, t.c.applied_at.is_(None)).order_by(t.c.id)
            ).mappings()
        ))

    def command_row(self, command_id: int) -> Mapping[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.commands).where(schema.commands.c.id == command_id)).mappings().one()
            return cast(_Row, row)

    def compiled(
        self, stmt: sa.sql.ClauseElement, keys: Iterable[str] | None = None
    ) -> tuple[str, tuple[str, ...] | None]:
        """SQL text in the driver's paramstyle and, for positional styles, the parameter order.

        The scheduler's flush executes these on its DB-API connection and commits there: the same
        statements as SQLAlchemy's, without its per-statement work (B1 in bench/)."""
        # A DML statement compiles to an SQLCompiler, which has the positional parameter order.
        column_keys = list(keys) if keys is not None else None
        c = cast("SQLCompiler", stmt.compile(dialect=self.engine.dialect, column_keys=column_keys))
        return c.string, (tuple(c.positiontup) if c.positional and c.positiontup is not None else None)

    def dispose(self) -> None:
        self.engine.dispose()


def _revision(conn: Connection) -> str | None:
    """The store's schema revision, read from Alembic's version table as Alembic writes it (None: no
    table yet, a new store; several rows, a branched history, come back joined and are not head)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    found = list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    return ",".join(found) if found else None
