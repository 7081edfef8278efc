"""The report's picture: published certifications laid out by Graphviz, and
keyanalyze's event-wide figures (largest strongly connected set, mean
shortest distance within it) as plain functions over small known graphs."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET

import pytest

from keyparty import graphviz
from keyparty import report
from keyparty.report import Graph
from keyparty.report import graph_dot
from keyparty.report import graph_figures
from keyparty.report import mean_shortest_distance
from keyparty.report import strongly_connected_sets
from tests.test_publishing import BOB_UID
from tests.test_publishing import decide
from tests.test_publishing import received

SVG = "{http://www.w3.org/2000/svg}"


# -- figures on small known graphs --------------------------------------------


def test_strongly_connected_sets_of_known_graphs():
    # a <-> b -> c -> d -> c, e alone
    edges = {("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "c")}
    sets = strongly_connected_sets("abcde", edges)
    assert sets == [{"a", "b"}, {"c", "d"}, {"e"}]
    # One cycle through everything.
    ring = {(str(i), str((i + 1) % 6)) for i in range(6)}
    assert strongly_connected_sets([str(i) for i in range(6)], ring) == [set("012345")]
    # A chain has no set larger than one key.
    chain = {("1", "2"), ("2", "3")}
    assert [len(s) for s in strongly_connected_sets("123", chain)] == [1, 1, 1]
    assert strongly_connected_sets([], set()) == []


def test_strongly_connected_sets_without_recursion_limits():
    # A 5000-key ring would overflow a recursive Tarjan.
    n = 5000
    ring = {(i, (i + 1) % n) for i in range(n)}
    (only,) = strongly_connected_sets(range(n), ring)
    assert len(only) == n


def test_mean_shortest_distance_of_known_graphs():
    # A mutual pair: every distance is 1.
    assert mean_shortest_distance({"a", "b"}, {("a", "b"), ("b", "a")}) == 1
    # A directed 3-ring: from each key 1 and 2 steps -> mean 1.5.
    ring = {("a", "b"), ("b", "c"), ("c", "a")}
    assert mean_shortest_distance({"a", "b", "c"}, ring) == 1.5
    # A directed 4-ring: 1, 2, 3 -> 2.
    ring4 = {("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")}
    assert mean_shortest_distance(set("abcd"), ring4) == 2
    # Complete: all ones. Edges leaving the set do not count.
    complete = {(x, y) for x in "abc" for y in "abc" if x != y} | {("a", "z")}
    assert mean_shortest_distance(set("abc"), complete) == 1
    assert mean_shortest_distance({"a"}, set()) is None
    with pytest.raises(ValueError):
        mean_shortest_distance({"a", "b"}, {("a", "b")})


def _mean_by_one_search_per_member(members, edges) -> float:
    """The plain way: a breadth-first search from each member."""
    successors = {m: [t for s, t in edges if s == m and t in members] for m in members}
    total = 0
    for start in members:
        distance, frontier = {start: 0}, [start]
        while frontier:
            following = []
            for node in frontier:
                for child in successors[node]:
                    if child not in distance:
                        distance[child] = distance[node] + 1
                        following.append(child)
            frontier = following
        total += sum(distance.values())
    return total / (len(members) * (len(members) - 1))


def test_mean_shortest_distance_equals_one_search_per_member():
    chance = random.Random(13)
    for _ in range(60):
        n = chance.randint(2, 30)
        edges = {(i, (i + 1) % n) for i in range(n)}  # a ring: strongly connected
        edges |= {
            (chance.randrange(n), chance.randrange(n)) for _ in range(chance.randint(0, 3 * n))
        }
        edges |= {(0, "outside"), ("outside", 1)}  # never counted: not a member
        members = set(range(n))
        assert mean_shortest_distance(members, edges) == pytest.approx(
            _mean_by_one_search_per_member(members, edges)
        )


def test_figures_of_a_thousand_keys_with_25_000_certifications():
    # The big event of bench/big_event.py: each key certified by the 25 before it.
    n = 1000
    edges = {(i, (i + j) % n) for i in range(n) for j in range(1, 26)}
    figures = graph_figures(Graph({i: (i, f"Name {i}") for i in range(n)}, frozenset(edges)))
    assert figures["largest strongly connected set"] == n
    assert figures["certifying pairs"] == 25_000
    # distance k*25 + r steps ... : ceil(d / 25) steps to the key d places on
    mean = sum(-(-d // 25) for d in range(1, n)) / (n - 1)
    assert figures["mean shortest distance in it"] == pytest.approx(mean)


def test_figures_are_event_wide():
    nodes = {f: (n, f"Name {n}") for n, f in enumerate("abcde", 1)}
    edges = frozenset({("a", "b"), ("b", "a"), ("b", "c"), ("c", "a"), ("d", "e")})
    assert graph_figures(Graph(nodes, edges)) == {
        "keys": 5,
        "certifying pairs": 5,
        "mutual pairs": 1,
        "largest strongly connected set": 3,
        # a->b 1, a->c 2, b->a 1, b->c 1, c->a 1, c->b 2 -> 8/6
        "mean shortest distance in it": pytest.approx(8 / 6),
    }
    lonely = graph_figures(Graph(nodes, frozenset({("a", "b")})))
    assert lonely["largest strongly connected set"] == 0
    assert lonely["mean shortest distance in it"] is None


# -- DOT from strangers' names -------------------------------------------------


def test_quote_keeps_a_name_a_name():
    assert graphviz.quote('Bob "Bobby" Tables') == '"Bob \\"Bobby\\" Tables"'
    assert graphviz.quote("back\\slash \\N") == '"back\\\\slash \\\\N"'
    assert graphviz.quote("001\nAlice") == '"001\\nAlice"'


EVIL = [
    'Mallory"]; x -> y; z [label="pwned',
    "Eve \\N \\G \\L",
    "Zed\x1b[2J\n}\ndigraph {",
    "山田太郎",
    "ليلى أحمد",
]


def small_graph(names) -> Graph:
    fprs = [f"{i:040X}" for i in range(len(names))]
    nodes = {fpr: (i + 1, name) for i, (fpr, name) in enumerate(zip(fprs, names, strict=True))}
    edges = {(fprs[0], fprs[1]), (fprs[1], fprs[0]), (fprs[1], fprs[2]), (fprs[3], fprs[4])}
    return Graph(nodes, frozenset(edges))


def svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_the_drawing_shows_numbers_names_arrows_and_mutual_pairs():
    graph = small_graph(EVIL)
    source = graph_dot(graph, 'Party "<script>"')
    # Exactly one node statement per key and one edge statement per drawn arrow.
    assert len(re.findall(r"(?m)^  k\d+ \[label=", source)) == 5
    assert len(re.findall(r"(?m)^  k\d+ -> k\d+", source)) == 3
    assert source.count("dir=both") == 1
    svg = graphviz.render(source, "svg", "dot")
    root = ET.fromstring(svg)  # well-formed XML whatever the names held
    texts = svg_texts(svg)
    for number in ("001", "002", "003", "004", "005"):
        assert number in texts
    assert 'Mallory"]; x -> y; z [label="pwned' in texts
    assert "Eve \\\\N \\\\G \\\\L" in texts, "no Graphviz escape is interpreted"
    assert "Zed\\x1b[2J } digraph {" in texts
    assert "山田太郎" in texts and "ليلى أحمد" in texts
    assert 'Party "<script>"' in texts
    assert b"<script" not in svg
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(edges) == 3
    heads = [len([p for p in e.iter(f"{SVG}polygon")]) for e in edges]
    assert sorted(heads) == [1, 1, 2], "an arrowhead on each arrow, two on the mutual one"


def test_png_for_printing():
    png = graphviz.render(graph_dot(small_graph(EVIL), "t"), "png", "dot")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def boxes(svg: bytes) -> list[tuple[float, float, float, float]]:
    """The bounding box of each node's drawn outline."""
    found = []
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        outline = next(g.iter(f"{SVG}path"), None)
        shape = outline.get("d") if outline is not None else ""
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", shape)]
        xs, ys = numbers[0::2], numbers[1::2]
        found.append((min(xs), min(ys), max(xs), max(ys)))
    return found


def test_three_hundred_keys_stay_readable():
    """300 keys, 1500 signer -> key pairs: no two labelled boxes overlap."""
    rng = random.Random(300)
    fprs = [f"{i:040X}" for i in range(300)]
    nodes = {fpr: (i + 1, f"Attendee Number {i + 1}") for i, fpr in enumerate(fprs)}
    edges = set()
    while len(edges) < 1500:
        edges.add(tuple(rng.sample(fprs, 2)))
    graph = Graph(nodes, frozenset(edges))
    source = graph_dot(graph, "300 keys")
    assert "overlap=prism" in source
    svg = graphviz.render(source, "svg", "sfdp")
    found = boxes(svg)
    assert len(found) == 300
    overlapping = [
        (a, b)
        for i, a in enumerate(found)
        for b in found[i + 1 :]
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    ]
    assert overlapping == []
    assert len(svg_texts(svg)) >= 600  # number and name of every key


def test_a_missing_graphviz_is_said_plainly(monkeypatch):
    monkeypatch.setenv("KEYPARTY_DOT", "no-such-dot-program")
    with pytest.raises(graphviz.GraphvizError, match="apt-get install graphviz"):
        graphviz.render("digraph {}", "svg")
    with pytest.raises(ValueError):
        graphviz.render("digraph {}", "pdf")


# -- the host page and the command line ----------------------------------------


@pytest.fixture
def published_event(app, certified_event):
    cert = received(certified_event, "Bob", BOB_UID, "identity")
    decide(app, certified_event, "Bob", cert, "accepted")
    return certified_event


def test_the_report_totals_are_labelled_in_the_hosts_language(client, published_event):
    """Every label of the totals table is a word of the page's language, not
    the name keyparty counts it under."""
    event = published_event
    english = client.get(f"/host/e/{event.id}/report").text
    assert re.search(r"<th>withdrawn verifications</th><td>0</td>", english)
    assert re.search(r"<td>awaiting owner 3, published 1</td>", english)
    page = client.get(f"/host/e/{event.id}/report", headers={"Accept-Language": "ja"}).text
    assert re.search(r"<th>参加者</th><td>3</td>", page)
    assert re.search(r"<th>取り消された検証</th><td>0</td>", page)
    assert re.search(r"<th>署名</th><td>持ち主の判断待ち 3, 公開済み 1</td>", page)
    assert "規則ごとの拒否" in page
    for english_label in ("attendees", "withdrawn verifications", "awaiting owner", "published"):
        assert english_label not in re.sub(r"<svg.*?</svg>", "", page, flags=re.S)


def test_the_report_page_draws_the_published_graph(client, published_event):
    event = published_event
    page = client.get(f"/host/e/{event.id}/report").text
    assert "<svg" in page and "<?xml" not in page
    assert "001" in page and "Alice Example" in page and "Bob Example" in page
    assert re.search(r"largest strongly connected set.*?<td>0 keys</td>", page, re.S)
    png = client.get(f"/host/e/{event.id}/report/graph.png")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    assert png.headers["Content-Type"] == "image/png"
    svg = client.get(f"/host/e/{event.id}/report/graph.svg")
    edges = [g for g in ET.fromstring(svg.data).iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(edges) == 1, "one published certification, Alice -> Bob"
    assert client.get(f"/host/e/{event.id}/report/graph.pdf").status_code == 404


def test_the_report_command_writes_svg_and_png(runner, published_event, tmp_path):
    svg, png = tmp_path / "graph.svg", tmp_path / "graph.png"
    result = runner.invoke(
        args=["report", published_event.id, "--graph", str(svg), "--png", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "largest strongly connected set: 0 keys" in result.output
    assert "mean shortest distance in it: -" in result.output
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "Alice Example" in svg.read_text()


def test_graph_of_the_event(published_event):
    graph = report.certification_graph(published_event)
    numbers = sorted(number for number, _ in graph.nodes.values())
    assert numbers == [1, 2, 3]
    ((source, target),) = graph.edges
    assert graph.nodes[source][1] == "Alice Example" and graph.nodes[target][1] == "Bob Example"


def test_the_drawing_is_kept_until_the_published_graph_changes(
    app, client, published_event, monkeypatch
):
    event_id = published_event.id
    first = client.get(f"/host/e/{event_id}/report").text
    assert "<svg" in first and "Bob Example" in first
    # Without Graphviz the same graph is still shown: it was kept, not drawn again.
    monkeypatch.setenv("KEYPARTY_DOT", "no-such-dot-program")
    again = client.get(f"/host/e/{event_id}/report").text
    assert "apt-get install graphviz" not in again
    assert again.count("Bob Example") == first.count("Bob Example")
    # A format never drawn before, or a changed graph, needs Graphviz again.
    assert client.get(f"/host/e/{event_id}/report/graph.png").status_code == 503
    # Bob declines after all: the published graph loses its one arrow.
    cert = received(published_event, "Bob", BOB_UID, "identity")
    decide(app, published_event, "Bob", cert, "declined")
    changed = client.get(f"/host/e/{event_id}/report").text
    assert "apt-get install graphviz" in changed


# -- the picture is drawn when the data changes, kept for every process ----------


@pytest.fixture
def slow_dot(tmp_path, monkeypatch):
    """Graphviz's own `dot`, one second late: a drawing is surely under way
    when the page looks."""
    script = tmp_path / "slow-dot"
    script.write_text('#!/bin/sh\nsleep 1\nexec dot "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("KEYPARTY_DOT", str(script))


def test_a_decision_draws_the_picture_for_every_server_process(
    app, certified_event, instance, monkeypatch
):
    from keyparty import create_app

    app.config.update(REPORT_DRAW_AFTER_CHANGES=True, REPORT_DRAW_DELAY_SECONDS=0)
    event_id = certified_event.id
    cert = received(certified_event, "Bob", BOB_UID, "identity")
    decide(app, certified_event, "Bob", cert, "accepted")
    assert report.wait_for_drawing(event_id, 60)
    # Another server process on the same database, with no Graphviz at all:
    # it shows the picture the first one drew after the decision.
    monkeypatch.setenv("KEYPARTY_DOT", "no-such-dot-program")
    other = create_app({"TESTING": True, "REPORT_DRAWING_WAIT_SECONDS": 5})
    page = other.test_client().get(f"/host/e/{event_id}/report").text
    assert "apt-get install graphviz" not in page and "being drawn" not in page
    assert "<svg" in page and "Alice Example" in page and "Bob Example" in page
    assert re.search(r"signer → key pairs with a published certification</th><td>1<", page)
    svg = other.test_client().get(f"/host/e/{event_id}/report/graph.svg")
    assert svg.status_code == 200 and b"Bob Example" in svg.data
    with other.app_context():
        from keyparty.extensions import db

        db.engine.dispose()


def test_the_page_says_plainly_while_the_picture_is_being_drawn(
    app, client, published_event, slow_dot
):
    app.config["REPORT_DRAWING_WAIT_SECONDS"] = 0
    event_id = published_event.id
    first = client.get(f"/host/e/{event_id}/report").text
    assert "The picture of the published certifications is being drawn" in first
    assert "<svg" not in first and "keys on the list" not in first
    # The totals never wait for the picture.
    assert re.search(r"<th>keys</th><td>3</td>", first)
    assert report.wait_for_drawing(event_id, 60)
    drawn = client.get(f"/host/e/{event_id}/report").text
    assert "being drawn" not in drawn and "<svg" in drawn and "Bob Example" in drawn
    assert re.search(r"signer → key pairs with a published certification</th><td>1<", drawn)
    # Bob declines after all: until the new picture is drawn, the old one is
    # shown, saying that it is older than the latest decisions.
    cert = received(published_event, "Bob", BOB_UID, "identity")
    decide(app, published_event, "Bob", cert, "declined")
    stale = client.get(f"/host/e/{event_id}/report").text
    assert "before the latest owner decisions. A new picture is being drawn" in stale
    assert "<svg" in stale and "Bob Example" in stale
    assert report.wait_for_drawing(event_id, 60)
    now = client.get(f"/host/e/{event_id}/report").text
    assert "being drawn" not in now
    assert re.search(r"signer → key pairs with a published certification</th><td>0<", now)


def test_an_older_drawing_never_replaces_a_newer_one(app, published_event):
    from keyparty.extensions import db
    from keyparty.models import ReportDrawing

    event_id = published_event.id
    assert report.draw_and_store(event_id)
    kept = db.session.get(ReportDrawing, event_id)
    newer = kept.published_generation + 5
    kept.published_generation, kept.digest = newer, "drawn-from-newer-data"
    db.session.commit()
    # This drawing reads the graph at an older generation: it is dropped.
    assert report.draw_and_store(event_id) == "drawn-from-newer-data"
    assert db.session.get(ReportDrawing, event_id, populate_existing=True).digest == (
        "drawn-from-newer-data"
    )


def test_purge_deletes_the_kept_picture_with_its_names(app, runner, published_event):
    from keyparty import events
    from keyparty.extensions import db
    from keyparty.models import ReportDrawing

    event = published_event
    assert report.draw_and_store(event.id)
    assert b"Alice Example" in db.session.get(ReportDrawing, event.id).svg
    assert events.take_step(event, "close") is None
    result = runner.invoke(args=["purge", event.id, "--yes"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(ReportDrawing)) == 0


def test_a_large_picture_is_linked_by_its_digest(app, client, published_event, monkeypatch):
    monkeypatch.setattr(report, "INLINE_LIMIT", 0)  # every picture counts as large
    event_id = published_event.id
    page = client.get(f"/host/e/{event_id}/report").text
    assert "<svg" not in page
    (address,) = re.findall(rf'<img src="(/host/e/{event_id}/report/picture-[0-9a-f]+\.svg)"', page)
    picture = client.get(address)
    assert picture.status_code == 200 and picture.mimetype == "image/svg+xml"
    assert b"Alice Example" in picture.data and b"Bob Example" in picture.data
    assert picture.headers["Cache-Control"] == "no-store"  # names, as every host page
    # Bob declines: a new picture under a new address; the old one is gone.
    cert = received(published_event, "Bob", BOB_UID, "identity")
    decide(app, published_event, "Bob", cert, "declined")
    again = client.get(f"/host/e/{event_id}/report").text
    (new,) = re.findall(rf'<img src="(/host/e/{event_id}/report/picture-[0-9a-f]+\.svg)"', again)
    assert new != address and client.get(address).status_code == 404
    edges = ET.fromstring(client.get(new).data).iter(f"{SVG}g")
    assert not [g for g in edges if g.get("class") == "edge"]


def test_the_report_command_gives_the_kept_figures_of_the_same_graph(app, runner, published_event):
    from keyparty.extensions import db
    from keyparty.models import ReportDrawing

    assert report.draw_and_store(published_event.id)
    kept = db.session.get(ReportDrawing, published_event.id)
    kept.figures = {**kept.figures, "largest strongly connected set": 7}
    db.session.commit()
    result = runner.invoke(args=["report", published_event.id])
    assert "largest strongly connected set: 7 keys" in result.output
    # Once the graph changed, the kept figures are not of it: computed again.
    cert = received(published_event, "Bob", BOB_UID, "identity")
    decide(app, published_event, "Bob", cert, "declined")
    result = runner.invoke(args=["report", published_event.id])
    assert "largest strongly connected set: 0 keys" in result.output
