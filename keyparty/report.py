"""The event report: event-wide totals only (P5), the graph of published
certifications, and what expires soon (D4)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from flask import current_app
from flask import has_request_context
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from keyparty import graphviz
from keyparty.extensions import db
from keyparty.graphviz import quote
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import ReportDrawing
from keyparty.partylist import safe_text
from keyparty.storage import is_transient
from keyparty.translatable import N_
from keyparty.verification import totals as verification_totals


def totals(event: Event) -> dict:
    """Event-wide counts (P5): counted by the database, whatever the event's size."""
    grouped = db.session.execute(
        select(Certification.status, Certification.owner_decision, func.count())
        .where(Certification.event_id == event.id)
        .group_by(Certification.status, Certification.owner_decision)
    ).all()
    states: Counter = Counter()
    for status, decision, count in grouped:
        state = (
            N_("refused")
            if status == "refused"
            else {"accepted": N_("published"), "declined": N_("declined")}.get(
                decision, N_("awaiting owner")
            )
        )
        states[state] += count
    found = verification_totals(event)
    return {
        # The names are the labels the report shows, translated there.
        N_("attendees"): _count(Attendee, Attendee.event_id == event.id),
        N_("keys"): _count(Key, Key.event_id == event.id),
        N_("verifications"): found["verifications"],
        N_("withdrawn verifications"): found["withdrawn"],
        N_("certifications"): dict(sorted(states.items())),
        N_("refusals by rule"): found["refusals"],
    }


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def expiring_count(event: Event, days: int, now: datetime | None = None) -> int:
    """D4, event-wide: how many published certifications expire within `days`
    (and have not expired yet); counted by the database."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    return _count(
        Certification,
        *_published(event),
        Certification.expires > now,
        Certification.expires <= now + timedelta(days=days),
    )


def _published(event: Event) -> tuple:
    """Where-clauses of the owner-accepted certifications (O1), as publishing.owner_accepted."""
    return (
        Certification.event_id == event.id,
        Certification.status == "accepted",
        Certification.owner_decision == "accepted",
    )


def expiring(certifications: list[Certification], days: int, now: datetime | None = None):
    """D4: certifications that expire within `days` (and have not expired yet)."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    until = now + timedelta(days=days)
    return [c for c in certifications if c.expires and now < c.expires <= until]


def given_and_received(attendee: Attendee) -> tuple[list[Certification], list[Certification]]:
    key_ids = [k.id for k in attendee.keys]
    given = db.session.scalars(
        select(Certification).where(
            Certification.signer_id == attendee.id, Certification.status == "accepted"
        )
    ).all()
    received = db.session.scalars(
        select(Certification).where(
            Certification.key_id.in_(key_ids), Certification.status == "accepted"
        )
    ).all()
    return given, received


# -- the graph of published certifications ----------------------------------------


@dataclass(frozen=True)
class Graph:
    """Published certifications between the keys of the list, as plain data.

    nodes: fingerprint -> (list number, attendee name); edges: (signer's
    fingerprint, certified key's fingerprint), each pair once however many user
    IDs or contexts it covers.
    """

    nodes: dict[str, tuple[int, str]]
    edges: frozenset[tuple[str, str]]


def certification_graph(event: Event) -> Graph:
    """The event's keys and its owner-accepted certifications between them (O1).

    Two queries, only the columns drawn: an event of a thousand keys and fifty
    thousand certifications loads no certification itself.
    """
    nodes = {
        fingerprint: (number or 0, name or "")
        for fingerprint, number, name in db.session.execute(
            select(Key.fingerprint, Key.list_number, Attendee.name)
            .outerjoin(Attendee, Key.attendee_id == Attendee.id)
            .where(Key.event_id == event.id)
        )
    }
    pairs = db.session.execute(
        select(Certification.issuer_fingerprint, Certification.target_fingerprint)
        .where(*_published(event))
        .distinct()
    )
    edges = frozenset(
        (issuer, target)
        for issuer, target in pairs
        if issuer in nodes and target in nodes and issuer != target
    )
    return Graph(nodes, edges)


def _successors(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in sorted(edges):
        out.setdefault(source, []).append(target)
        out.setdefault(target, [])
    return out


def strongly_connected_sets(
    nodes: Iterable[str], edges: Iterable[tuple[str, str]]
) -> list[set[str]]:
    """The strongly connected components (Tarjan, without recursion), largest first.

    Two keys are in one set when each reaches the other along certifications.
    """
    successors = _successors(nodes, edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in successors:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            if position < len(children):
                work.append((node, position + 1))
                child = children[position]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found, key=lambda c: (-len(c), sorted(c)))


def mean_shortest_distance(members: set[str], edges: Iterable[tuple[str, str]]) -> float | None:
    """Mean number of certification steps from one member to another, over all
    ordered pairs of different members (keyanalyze's figure for the strong set).

    None for fewer than two members. Every member must reach every other (a
    strongly connected set); ValueError otherwise.
    """
    if len(members) < 2:
        return None
    # Every start at once (bit-parallel breadth-first search): bit i of
    # reached[v] says that member i reaches v within the steps taken so far.
    # One pass over the edges per step instead of one search per member: a
    # thousand keys with 25 000 certifications take a fraction of a second.
    order = sorted(members)
    bit = {member: 1 << i for i, member in enumerate(order)}
    predecessors: dict[str, list[str]] = {member: [] for member in order}
    for source, target in set(edges):
        if source in members and target in members and source != target:
            predecessors[target].append(source)
    reached = dict(bit)
    total, steps = 0, 0
    while True:
        steps += 1
        grown = {}
        for member in order:
            now = reached[member]
            for source in predecessors[member]:
                now |= reached[source]
            gained = now & ~reached[member]
            if gained:
                total += steps * gained.bit_count()
            grown[member] = now
        if grown == reached:
            break
        reached = grown
    everyone = (1 << len(order)) - 1
    if any(value != everyone for value in reached.values()):
        raise ValueError("not a strongly connected set: some member does not reach another")
    return total / (len(members) * (len(members) - 1))


def graph_figures(graph: Graph) -> dict:
    """Event-wide figures (P5: nothing per attendee): keys, published
    certification pairs, mutual pairs, the largest strongly connected set and
    the mean shortest distance within it."""
    strong = strongly_connected_sets(graph.nodes, graph.edges)
    largest = strong[0] if strong and len(strong[0]) > 1 else set()
    mutual = sum(1 for s, t in graph.edges if (t, s) in graph.edges) // 2
    return {
        "keys": len(graph.nodes),
        "certifying pairs": len(graph.edges),
        "mutual pairs": mutual,
        "largest strongly connected set": len(largest),
        "mean shortest distance in it": mean_shortest_distance(largest, graph.edges),
    }


# Past this many keys the hierarchical `dot` layout tangles: a force-directed
# layout (sfdp) with overlap removal keeps every label readable.
LARGE_GRAPH = 40
NAME_LIMIT = 40


def _label(number: int, name: str) -> str:
    name = safe_text(" ".join(name.split()))
    if len(name) > NAME_LIMIT:
        name = name[: NAME_LIMIT - 1] + "…"
    return f"{number:03d}\n{name}" if name else f"{number:03d}"


def graph_dot(graph: Graph, title: str) -> str:
    """DOT source: a node per key labelled with its list number and name, an
    arrow per signer → certified key, one double-headed arrow for a mutual pair.

    Names and the title are strangers' text: made visible (safe_text) and quoted
    (graphviz.quote); node ids are k<number>, never a name.
    """
    large = len(graph.nodes) > LARGE_GRAPH
    # Keys in list order, the fingerprint breaking ties (before the freeze every
    # number is 0): the same graph gives the same source, so the same digest,
    # in every process whatever its hash seed.
    order = sorted(graph.nodes, key=lambda fpr: (graph.nodes[fpr], fpr))
    rank = {fpr: n for n, fpr in enumerate(order, 1)}
    lines = [
        "digraph certifications {",
        f"  graph [label={quote(safe_text(title))}, labelloc=t, fontsize=18, fontname=sans,"
        " outputorder=edgesfirst, pad=0.3, bgcolor=white"
        + (', overlap=prism, overlap_scaling=-4, sep="+6", splines=false' if large else "")
        + (", rankdir=LR, nodesep=0.3, ranksep=0.9" if not large else "")
        + "];",
        '  node [shape=box, style="rounded,filled", fillcolor="#e8f0ff", color="#0b5fff",'
        ' fontname=sans, fontsize=11, margin="0.08,0.04"];',
        '  edge [color="#456789", arrowsize=0.8, penwidth=1.2];',
    ]
    for fpr in order:
        lines.append(f"  k{rank[fpr]} [label={quote(_label(*graph.nodes[fpr]))}];")
    # Integer pairs: 25 000 arrows at a big event, sorted and written quickly.
    pairs = sorted((rank[source], rank[target]) for source, target in graph.edges)
    present = set(pairs)
    for source, target in pairs:
        if (target, source) not in present:
            lines.append(f"  k{source} -> k{target};")
        elif source < target:  # a mutual pair: one double-headed arrow
            lines.append(f'  k{source} -> k{target} [dir=both, color="#1a7f37", penwidth=2];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def drawing_source(event: Event, graph: Graph) -> tuple[str, str, str]:
    """What Graphviz is given for `graph`: (engine, DOT source, digest).

    The digest (32 hex digits of SHA-256 over engine and source) names a
    drawing: one kept under the same digest shows exactly this graph.
    """
    title = f"{event.name}: published certifications (green ↔ = mutual)"
    engine = "sfdp" if len(graph.nodes) > LARGE_GRAPH else "dot"
    source = graph_dot(graph, title)
    digest = hashlib.sha256(f"{engine}\n{source}".encode()).hexdigest()[:32]
    return engine, source, digest


def draw_graph(event: Event, fmt: str = "svg", graph: Graph | None = None) -> bytes:
    """The published certifications of `event` laid out by Graphviz, as SVG or PNG.

    The drawing is kept in the event's files, named by a digest of its DOT
    source: it is drawn again only when the published graph (or the event's
    name) changed. `graph`: certification_graph(event), if already at hand.
    Raises graphviz.GraphvizError.
    """
    graph = graph or certification_graph(event)
    engine, source, digest = drawing_source(event, graph)
    kept_svg = fmt == "svg" and db.session.get(ReportDrawing, event.id)
    if kept_svg and kept_svg.digest == digest:
        return kept_svg.svg  # what the report page shows, drawn when the data changed
    from keyparty.events import event_files  # keyparty.events imports this module

    folder = event_files(event)
    kept = folder / f"graph-{digest}.{fmt}"
    if kept.exists():
        return kept.read_bytes()
    data = graphviz.render(source, fmt, engine)
    for old in folder.glob(f"graph-*.{fmt}"):
        old.unlink(missing_ok=True)
    partial = kept.with_name(f".{kept.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, kept)  # whole or not at all, for another process reading it
    return data


# -- the picture, drawn when the data changes ----------------------------------------
#
# Laying out a thousand keys (sfdp with overlap removal) and the figures of
# their graph (mean shortest distance) take seconds: far too long for a page
# view. So the picture is drawn after the published certifications change
# (an owner's decision), in a thread of the process that made the change,
# and kept in the database (ReportDrawing) where every process finds it. The
# page checks the kept drawing's digest against the graph as it is now; when
# they differ it starts a drawing itself, waits for it a moment, and else
# shows the previous picture (or none) saying a new one is being drawn.


# A larger picture is linked from the report page (picture_svg) rather than
# written into it: the page stays small, and a browser draws it as an image.
INLINE_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Picture:
    """What the report page shows of the published graph.

    svg: the drawing to embed (inline_svg), or None when it is linked or none
    was ever drawn; digest: the kept drawing's (picture_svg serves it), None
    while none was drawn; figures: graph_figures() of the kept drawing's
    graph; current: drawing and figures show the published certifications as
    they are now; drawn_at (UTC, naive) when they were drawn; error: why the
    last drawing of the graph as it is now failed, if it did.
    """

    svg: str | None
    digest: str | None
    figures: dict | None
    current: bool
    drawn_at: datetime | None
    error: str | None = None


_drawing_lock = threading.Lock()
_drawing: dict[str, threading.Thread] = {}  # event id -> its drawing thread
_draw_again: set[str] = set()  # changed while being drawn: draw once more
_failed: dict[str, tuple[str, str]] = {}  # event id -> (digest, Graphviz's complaint)


def draw_and_store(event_id: str) -> str | None:
    """Draw the event's published graph and compute its figures, and keep both
    (ReportDrawing), unless the kept drawing has the same digest already.

    For a thread or a command with an app context and no request (it commits
    the caller's transaction first): reads the
    graph in one read-only transaction, draws with no transaction open (the
    database is never locked while Graphviz works), writes in a short one.
    A drawing made from an older generation than the kept one is dropped.
    Returns the digest now kept, or None for an unknown event. Raises
    graphviz.GraphvizError when Graphviz is missing or fails.
    """
    from keyparty.storage import READ_ONLY

    db.session.commit()  # what the caller did so far stays; then a read-only transaction
    db.session.connection(execution_options={READ_ONLY: True})
    event = db.session.get(Event, event_id)
    if event is None:
        db.session.rollback()
        return None
    generation = event.published_generation
    graph = certification_graph(event)
    engine, source, digest = drawing_source(event, graph)
    kept = db.session.get(ReportDrawing, event_id)
    fresh = kept is not None and kept.digest == digest
    db.session.rollback()
    if fresh:
        return digest
    try:
        svg = graphviz.render(source, "svg", engine)
    except graphviz.GraphvizError as problem:
        _failed[event_id] = (digest, str(problem))
        raise
    _failed.pop(event_id, None)
    figures = graph_figures(graph)
    for attempt in range(5):
        try:
            kept = db.session.get(ReportDrawing, event_id, populate_existing=True)
            if kept is None:
                kept = ReportDrawing(event_id=event_id)
                db.session.add(kept)
            elif kept.published_generation > generation:
                db.session.rollback()  # a newer drawing is kept already
                return kept_digest(event_id)
            kept.digest, kept.published_generation = digest, generation
            kept.figures, kept.svg, kept.drawn_at = (
                figures,
                svg,
                datetime.now(UTC).replace(tzinfo=None),
            )
            db.session.commit()
            return digest
        except DBAPIError as error:
            db.session.rollback()
            # Another process stored its drawing first, or held the lock: again.
            if not is_transient(error) or attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    return None


def kept_digest(event_id: str) -> str | None:
    """The digest of the drawing kept for the event, if any."""
    return db.session.scalar(select(ReportDrawing.digest).where(ReportDrawing.event_id == event_id))


def draw_soon(event_id: str, delay: float = 0.0) -> threading.Thread:
    """Start drawing the event's picture in a thread of this process (see
    draw_and_store), after `delay` seconds (a burst of decisions then makes one
    drawing). Needs an app context. If a drawing of this event is already under
    way here, it draws once more when done; that thread is returned."""
    app = current_app._get_current_object()
    with _drawing_lock:
        running = _drawing.get(event_id)
        if running is not None and running.is_alive():
            _draw_again.add(event_id)
            return running
        thread = threading.Thread(
            target=_draw_in_background,
            args=(app, event_id, delay),
            name=f"keyparty-report-{event_id}",
            daemon=True,
        )
        _drawing[event_id] = thread
        thread.start()
        return thread


def wait_for_drawing(event_id: str, timeout: float | None = None) -> bool:
    """Wait until this process draws nothing more for the event (draw_soon),
    at most `timeout` seconds; True when it is done. A command that exits, a
    test, or a benchmark waits for the picture this way."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _drawing_lock:
            running = _drawing.get(event_id)
        if running is None or not running.is_alive():
            return True
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        running.join(left)


def draw_after_change(event_id: str) -> None:
    """After a committed change to what is published: draw the picture soon,
    in the background, when the app says so (REPORT_DRAW_AFTER_CHANGES) and a
    server process is at work (a request; a command ends before a thread)."""
    if has_request_context() and current_app.config.get("REPORT_DRAW_AFTER_CHANGES", True):
        draw_soon(event_id, current_app.config.get("REPORT_DRAW_DELAY_SECONDS", 1.0))


def _draw_in_background(app, event_id: str, delay: float) -> None:
    while True:
        time.sleep(delay)
        with app.app_context():
            try:
                draw_and_store(event_id)
            except graphviz.GraphvizError:
                pass  # kept in _failed: the report page says it
            except Exception:  # noqa: BLE001  a thread has no one else to tell
                app.logger.exception("Drawing the report's picture of %s failed", event_id)
            finally:
                db.session.remove()
        with _drawing_lock:
            if event_id not in _draw_again:
                _drawing.pop(event_id, None)
                return
            _draw_again.discard(event_id)


def picture(event: Event, wait: float) -> Picture:
    """The picture and figures of the event's published graph for the report
    page. If the kept drawing is not of the graph as it is now, a drawing is
    started (draw_soon) and waited for at most `wait` seconds; after that the
    previous drawing is returned with current=False, or none at all.

    Ends the request's read transaction to see the drawing's commit.
    """
    _, _, digest = drawing_source(event, certification_graph(event))
    kept = db.session.get(ReportDrawing, event.id)
    if kept is None or kept.digest != digest:
        event_id = event.id
        draw_soon(event_id).join(wait)
        db.session.commit()  # a read so far: end it, to read what was just stored
        kept = db.session.get(ReportDrawing, event_id, populate_existing=True)
    current = kept is not None and kept.digest == digest
    failed = _failed.get(event.id)
    error = failed[1] if failed and failed[0] == digest and not current else None
    if kept is None:
        return Picture(None, None, None, False, None, error)
    size = db.session.scalar(
        select(func.length(ReportDrawing.svg)).where(ReportDrawing.event_id == event.id)
    )
    svg = inline_svg(kept.svg) if size is not None and size <= INLINE_LIMIT else None
    return Picture(svg, kept.digest, kept.figures, current, kept.drawn_at, error)


def figures_of(event: Event, graph: Graph) -> dict:
    """graph_figures(graph), taken from the kept drawing when it is of this
    very graph (the same digest): seconds saved at a thousand keys."""
    _, _, digest = drawing_source(event, graph)
    kept = db.session.get(ReportDrawing, event.id)
    return kept.figures if kept is not None and kept.digest == digest else graph_figures(graph)


def picture_svg(event_id: str, digest: str) -> bytes | None:
    """The kept drawing of the event named by `digest` (Picture.digest), or
    None once another replaced it: what the page linked, never a newer one."""
    return db.session.scalar(
        select(ReportDrawing.svg).where(
            ReportDrawing.event_id == event_id, ReportDrawing.digest == digest
        )
    )


def inline_svg(svg: bytes) -> str:
    """Graphviz's SVG without its XML prolog and DOCTYPE, to embed in a page."""
    text = svg.decode("utf-8")
    return text[text.index("<svg") :]
