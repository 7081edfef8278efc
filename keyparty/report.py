"""The event report: event-wide totals only (P5), the graph of published
certifications, and what expires soon (D4)."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select

from keyparty import graphviz
from keyparty.extensions import db
from keyparty.graphviz import quote
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.partylist import safe_text
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
            "refused"
            if status == "refused"
            else {"accepted": "published", "declined": "declined"}.get(decision, "awaiting owner")
        )
        states[state] += count
    found = verification_totals(event)
    return {
        "attendees": _count(Attendee, Attendee.event_id == event.id),
        "keys": _count(Key, Key.event_id == event.id),
        "verifications": found["verifications"],
        "withdrawn verifications": found["withdrawn"],
        "certifications": dict(sorted(states.items())),
        "refusals by rule": found["refusals"],
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
    ids = {fpr: f"k{n}" for n, fpr in enumerate(sorted(graph.nodes, key=graph.nodes.get), 1)}
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
    for fpr, (number, name) in sorted(graph.nodes.items(), key=lambda item: item[1]):
        lines.append(f"  {ids[fpr]} [label={quote(_label(number, name))}];")
    drawn = set()
    for source, target in sorted(graph.edges, key=lambda e: (graph.nodes[e[0]], graph.nodes[e[1]])):
        if (source, target) in drawn:
            continue
        if (target, source) in graph.edges:
            drawn.add((target, source))
            lines.append(
                f'  {ids[source]} -> {ids[target]} [dir=both, color="#1a7f37", penwidth=2];'
            )
        else:
            lines.append(f"  {ids[source]} -> {ids[target]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(event: Event, fmt: str = "svg", graph: Graph | None = None) -> bytes:
    """The published certifications of `event` laid out by Graphviz, as SVG or PNG.

    The drawing is kept in the event's files, named by a digest of its DOT
    source: it is drawn again only when the published graph (or the event's
    name) changed. `graph`: certification_graph(event), if already at hand.
    """
    graph = graph or certification_graph(event)
    title = f"{event.name}: published certifications (green ↔ = mutual)"
    engine = "sfdp" if len(graph.nodes) > LARGE_GRAPH else "dot"
    source = graph_dot(graph, title)
    digest = hashlib.sha256(f"{engine}\n{source}".encode()).hexdigest()[:32]
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


def inline_svg(svg: bytes) -> str:
    """Graphviz's SVG without its XML prolog and DOCTYPE, to embed in a page."""
    text = svg.decode("utf-8")
    return text[text.index("<svg") :]
