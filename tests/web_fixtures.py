"""A realistic released store for the web tests, written by the real `write_release`.

Two runs. Facet `request` has three levels (4 top clusters, 7 mid, 12 base in
the second run; the first run lacks one base cluster), facet `task` has two.
Every cluster has `language` and `concerning` breakdown cells. All counts are
at or above the thresholds, as the gate guarantees.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from clio.gate import GateResult
from clio.release import write_release
from clio.released import ReleasedBreakdown, ReleasedCluster, RunRow
from tests.ungated import ungated_result

MIN_USERS = 5
MIN_CONVERSATIONS = 5

# (id, name, description, keywords, users, concern): base clusters under their parents.
REQUEST_TREE = {
    ("request-L2-000", "Software development and debugging",
     "Users ask for help writing, fixing and understanding code."): {
        ("request-L1-000", "Debugging Python and data code",
         "Users bring failing Python scripts and data pipelines and ask why they break."): [
            ("request-L0-000", "Fix pandas DataFrame merge and join errors",
             "Users ask why merges of two tables drop or duplicate rows and how to fix them.",
             ["pandas", "merge", "dataframe", "join"], 64, 1.1),
            ("request-L0-001", "Resolve Python import and packaging problems",
             "Users cannot import a module or install a package in a virtual environment.",
             ["import", "pip", "venv", "module"], 41, 1.0),
        ],
        ("request-L1-001", "Building web front ends",
         "Users ask how to lay out pages and manage state in browser applications."): [
            ("request-L0-002", "Center and align elements with CSS flexbox",
             "Users want a box centred on the page or items spaced evenly in a row.",
             ["css", "flexbox", "align", "layout"], 37, 1.0),
            ("request-L0-003", "Handle form state in React components",
             "Users ask how to keep form inputs in sync with component state.",
             ["react", "form", "state", "hooks"], 29, 1.2),
        ],
    },
    ("request-L2-001", "Writing and editing help",
     "Users ask for drafts, rewrites and feedback on their writing."): {
        ("request-L1-002", "Professional writing",
         "Users draft letters and emails for work and job searches."): [
            ("request-L0-004", "Draft cover letters for job applications",
             "Users ask for a cover letter tailored to a job posting and their experience.",
             ["cover letter", "job", "application"], 52, 1.0),
            ("request-L0-005", "Polish the tone of workplace emails",
             "Users want an email to a manager or client to sound polite but firm.",
             ["email", "tone", "manager", "polite"], 33, 1.1),
        ],
        ("request-L1-003", "Creative writing",
         "Users ask for stories, poems and help developing characters."): [
            ("request-L0-006", "Write short fantasy stories with a twist",
             "Users ask for short stories about dragons, quests and unexpected endings.",
             ["story", "fantasy", "dragon", "twist"], 26, 1.4),
        ],
    },
    ("request-L2-002", "Potentially harmful requests",
     "Requests that could lead to harm to the user or to others."): {
        ("request-L1-004", "Requests involving weapons or violence",
         "Users ask how to make weapons or how to hurt another person."): [
            ("request-L0-007", "Ask how to make improvised weapons",
             "Users ask for instructions to build weapons from household items.",
             ["weapon", "build", "household"], 14, 4.6),
            ("request-L0-008", "Seek ways to hurt someone who wronged them",
             "Users describe anger at a person and ask how to take revenge.",
             ["revenge", "hurt", "neighbour"], 11, 4.2),
        ],
        ("request-L1-005", "Evading security and accessing accounts",
         "Users ask how to get into accounts or systems that are not theirs."): [
            ("request-L0-009", "Get into someone else's email or social account",
             "Users ask how to guess or reset the password of another person's account.",
             ["password", "account", "hack", "reset"], 18, 3.9),
        ],
    },
    ("request-L2-003", "Health and wellbeing questions",
     "Users ask about sleep, stress, exercise and everyday health."): {
        ("request-L1-006", "Sleep, stress and routines",
         "Users ask how to sleep better, manage stress and build habits."): [
            ("request-L0-010", "Cope with insomnia and stress before exams",
             "Students ask how to fall asleep and stay calm in the weeks before exams.",
             ["sleep", "exam", "stress", "insomnia"], 23, 1.7),
            ("request-L0-011", "Build healthier daily routines",
             "Users ask for morning routines, exercise plans and ways to keep habits.",
             ["routine", "habit", "exercise"], 19, 1.2),
        ],
    },
}  # fmt: skip

TASK_TREE = {
    ("task-L1-000", "Explain a concept",
     "The assistant is asked to explain how something works."): [
        ("task-L0-000", "Explain programming concepts", "Explanations of code and tools.",
         ["explain", "code"], 96, 1.1),
        ("task-L0-001", "Explain health topics", "Explanations of sleep, stress and diet.",
         ["explain", "health"], 38, 1.5),
    ],
    ("task-L1-001", "Generate text",
     "The assistant is asked to write new text."): [
        ("task-L0-002", "Generate letters and emails", "Drafts of letters and emails.",
         ["draft", "letter"], 81, 1.0),
        ("task-L0-003", "Generate harmful instructions", "Requests for dangerous how-to text.",
         ["instructions", "harm"], 40, 4.3),
    ],
}  # fmt: skip

NEW_IN_SECOND_RUN = "request-L0-011"
LANGUAGES = ("en", "fr", "es", "de", "zh")


@dataclass(frozen=True)
class Release:
    path: Path
    runs: list[tuple[RunRow, GateResult]]  # oldest first

    @property
    def latest(self) -> tuple[RunRow, GateResult]:
        return self.runs[-1]

    def clusters(self, run_index: int = -1) -> dict[str, ReleasedCluster]:
        return {c.cluster_id: c for c in self.runs[run_index][1].clusters}

    def breakdowns(self, cluster_id: str, run_index: int = -1) -> list[ReleasedBreakdown]:
        return [b for b in self.runs[run_index][1].breakdowns if b.cluster_id == cluster_id]


def build_release(path: Path, n_runs: int = 2) -> Release:
    """Write two runs (or only the first `n_runs`) into the released store at `path`;
    return what was written."""
    runs = []
    for index, (run_id, day, scale) in enumerate(
        [("run-2024-05-01", 1, 0.8), ("run-2024-05-08", 8, 1.0)][:n_runs]
    ):
        rng = random.Random(index)
        gate = _gate_result(scale, rng, include_new=index == 1)
        total = sum(
            c.n_conversations for c in gate.clusters if c.level == 0 and c.facet == "request"
        )
        started = datetime(2024, 5, day, 3, 0)
        run = RunRow(
            run_id=run_id,
            started_at=started,
            finished_at=started + timedelta(minutes=42),
            config_hash=f"cfg{index}a1b2c3",
            min_users=MIN_USERS,
            min_conversations=MIN_CONVERSATIONS,
            n_input=total + 17,
            n_quarantined=17,
            n_conversations=total,
            llm_calls=1200 + index,
            llm_cached_calls=300,
            input_tokens=450_000,
            output_tokens=61_000,
        )
        write_release(path, run, gate)
        runs.append((run, gate))
    return Release(path, runs)


def _gate_result(scale: float, rng: random.Random, include_new: bool) -> GateResult:
    clusters: list[ReleasedCluster] = []
    breakdowns: list[ReleasedBreakdown] = []
    for facet, tree in (("request", REQUEST_TREE), ("task", _as_three_levels(TASK_TREE))):
        bases = [
            (base, mid[0], top[0])
            for top, mids in tree.items()
            for mid, base_list in mids.items()
            for base in base_list
            if include_new or base[0] != NEW_IN_SECOND_RUN
        ]
        rows: dict[str, dict] = {}
        for (cid, name, description, keywords, users, concern), mid_id, top_id in bases:
            n_users = max(MIN_USERS, round(3 * users * scale))
            rows[cid] = dict(
                facet=facet, level=0, cluster_id=cid, parent_id=mid_id or top_id, name=name,
                description=description, keywords=keywords, n_users=n_users,
                n_conversations=n_users + rng.randint(3, 30), concern_mean=concern,
                x=None, y=None,
            )  # fmt: skip
        _place(rows, rng)
        for top, mids in tree.items():
            top_children = []
            for mid, base_list in mids.items():
                children = [rows[b[0]] for b in base_list if b[0] in rows]
                if mid[0] is not None:
                    rows[mid[0]] = _parent(facet, 1, mid, top[0], children)
                    top_children.append(rows[mid[0]])
                else:
                    top_children.extend(children)
            rows[top[0]] = _parent(facet, 2 if facet == "request" else 1, top, None, top_children)
        total = sum(r["n_conversations"] for r in rows.values() if r["level"] == 0)
        for row in rows.values():
            clusters.append(ReleasedCluster(share=row["n_conversations"] / total, **row))
            breakdowns.extend(_cells(row, rng))
    return ungated_result(clusters, breakdowns, {"below_min_users": 3})


def _as_three_levels(tree: dict) -> dict:
    """The task tree has two levels: its top clusters have no middle layer."""
    return {top: {(None, "", ""): bases} for top, bases in tree.items()}


def _place(rows: dict[str, dict], rng: random.Random) -> None:
    """Base clusters near their siblings on a [-1, 1] map, parent groups apart."""
    groups: dict[str, list[dict]] = {}
    for row in rows.values():
        groups.setdefault(row["parent_id"], []).append(row)
    for index, members in enumerate(groups.values()):
        angle = 2 * math.pi * index / len(groups)
        cx, cy = 0.65 * math.cos(angle), 0.65 * math.sin(angle)
        for row in members:
            row["x"] = round(cx + rng.uniform(-0.25, 0.25), 3)
            row["y"] = round(cy + rng.uniform(-0.25, 0.25), 3)


def _parent(
    facet: str, level: int, node: tuple, parent_id: str | None, children: list[dict]
) -> dict:
    cid, name, description = node
    n_users = sum(c["n_users"] for c in children)
    concern = sum(c["concern_mean"] * c["n_users"] for c in children) / n_users
    return dict(
        facet=facet, level=level, cluster_id=cid, parent_id=parent_id, name=name,
        description=description, keywords=sorted({k for c in children for k in c["keywords"]})[:5],
        n_users=n_users, n_conversations=sum(c["n_conversations"] for c in children),
        concern_mean=round(concern, 2),
        x=round(sum(c["x"] for c in children) / len(children), 3),
        y=round(sum(c["y"] for c in children) / len(children), 3),
    )  # fmt: skip


def _cells(row: dict, rng: random.Random) -> list[ReleasedBreakdown]:
    """A language mix (mostly English) and a concern-level spread around the mean;
    cells below the thresholds are left out, as the gate would suppress them."""
    cells = []
    n_users, n_conversations = row["n_users"], row["n_conversations"]
    weights = [0.7, 0.1, 0.09, 0.07, 0.04]
    for language, weight in zip(LANGUAGES, weights, strict=True):
        users = round(n_users * weight)
        conversations = round(n_conversations * weight)
        if users >= MIN_USERS and conversations >= MIN_CONVERSATIONS:
            cells.append(
                ReleasedBreakdown(row["cluster_id"], "language", language, users, conversations)
            )
    centre = round(row["concern_mean"])
    for level, weight in ((centre, 0.75), (min(5, centre + 1), 0.15), (max(1, centre - 1), 0.1)):
        users = round(n_users * weight)
        if users >= MIN_USERS and not any(
            c.facet == "concerning" and c.value == str(level) for c in cells
        ):
            cells.append(
                ReleasedBreakdown(
                    row["cluster_id"], "concerning", str(level), users, users + rng.randint(0, 3)
                )
            )
    return cells


# -- a live server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(db: Path) -> Iterator[str]:
    """`clio serve`'s app on 127.0.0.1 and a free port, in a thread; yields its base URL."""
    import uvicorn

    from clio.web.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(db, loopback_only=True),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
