"""The README quotes only what a results file holds, and every such file comes from a clean commit.

Every results file README.md cites (a path under ``benchmarks/results/``, or ``results/...`` in
its benchmarks table; ``{json,md}`` expanded; a directory cites every JSON in it) must exist, and
its JSON (a ``.md`` or ``.png`` is read through the JSON of the same run) must hold the provenance
block of :mod:`multiworld.bench.provenance`: a commit of this repository's history with no
uncommitted changes, the machine and the load, and the sha256 of the checkpoints it ran, which
must be the checkpoints shipped now. The headline figures in ``FIGURES`` must be the file's
numbers with the README's rounding. When a check fails, regenerate the file from a committed tree
(``make figures FIGURES=NAME``) and quote what it holds, or take the figure out of the README.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest

from multiworld.bench.provenance import sha256_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

# A picture is written by a run whose JSON has another name.
WRITTEN_WITH = {"suite/scaling.png": "suite/summary.json", "vizdoom/strip.png": "vizdoom/model.json"}

CITATION = re.compile(r"(?<![\w/.-])(?:benchmarks/)?results/[\w./{},*-]*")


def _row(data: dict, **where) -> dict:
    """The one entry of ``data["results"]`` whose fields equal ``where``."""
    rows = [r for r in data["results"] if all(r.get(k) == v for k, v in where.items())]
    assert len(rows) == 1, f"{len(rows)} rows of {where}"
    return rows[0]


def _refused(s: dict) -> str:
    """The rule's pushes on the model's world that the model refused, and of them those at a ghost box."""
    return f"{s['rule_pushes'] - s['possible']} / {s['ghost_refusals']}"


# The headline figures: (a text that picks the README line, the results file, the value in it,
# how the README rounds it). Each value so formatted must appear in that line.
FIGURES = [
    ("`python benchmarks/store_bench.py`", "store.json", lambda d: d["writes"][0]["p50_ms"], "{:.2f} ms p50"),
    ("`python benchmarks/store_bench.py`", "store.json", lambda d: d["writes"][0]["mean_ms"], "{:.2f} ms mean"),
    (
        "`python benchmarks/model_speed.py`",
        "model_speed.json",
        lambda d: _row(d, agents=4, threads=1)["env_steps_per_s"],
        "{:.1f} env-steps/s",
    ),
    (
        "`python benchmarks/model_speed.py`",
        "model_speed.json",
        lambda d: _row(d, agents=4, threads=1)["ms_state_update"],
        "state update {:.1f} ms",
    ),
    (
        "`python benchmarks/model_speed.py`",
        "model_speed.json",
        lambda d: _row(d, agents=4, threads=1)["ms_render"],
        "render {:.1f} ms",
    ),
    (
        "`python benchmarks/autoreset.py`",
        "autoreset.json",
        lambda d: (d["results"]["model"]["restart_over_step"], d["results"]["oracle"]["restart_over_step"]),
        "{0[0]:.2f}x (model) and {0[1]:.2f}x (oracle) a plain step",
    ),
    (
        "`python benchmarks/autoreset.py`",
        "autoreset.json",
        lambda d: (d["results"]["model"]["generic_over_step"], d["results"]["oracle"]["generic_over_step"]),
        "generic step-then-reset: {0[0]:.2f}x and {0[1]:.2f}x",
    ),
    (
        "`python benchmarks/viewer_bench.py`",
        "viewer.json",
        lambda d: (d["browser"]["first_step_ms_median"], d["browser"]["loaded_ms_median"]),
        "first step drawn in Chromium {0[0]:.0f} ms after the URL (whole timeline {0[1]:.0f} ms)",
    ),
    (
        "`python benchmarks/viewer_bench.py`",
        "viewer.json",
        lambda d: (d["scrub"]["step_ms"]["median"], *(d["browser"]["scrub_ms"][k] for k in ("median", "p95"))),
        "{0[0]:.2f} ms over HTTP, {0[1]:.0f} ms median / {0[2]:.0f} ms p95 until drawn",
    ),
    (
        "`python benchmarks/vector_speed.py",
        "vector_speed.json",
        lambda d: [
            _row(d, backend="model", worlds=w, image=i, precision=p, render="compiled")[k]
            for w, i, p, k in (
                (16, 64, "bf16", "agent_frames_per_s"),
                (16, 32, "bf16", "agent_frames_per_s"),
                (1, 32, "fp32", "env_steps_per_s"),
                (1, 64, "fp32", "env_steps_per_s"),
            )
        ],
        "16 worlds x 4 agents {0[0]:,.1f} agent-frames/s at 64x64 and {0[1]:,.1f} at 32x32 (bf16, compiled); "
        "one world of 4 agents {0[2]:.1f} env-steps/s at 32x32 and {0[3]:.1f} at 64x64 (fp32, compiled)",
    ),
    (
        "`python benchmarks/vizdoom_env.py`",
        "vizdoom/env.json",
        lambda d: [
            r[k]
            for r in d["rows"]
            if r["players"] == 4 and r["frame_skip"] == 1 and r["what"].startswith("env")
            for k in ("agent_frames_per_s", "of_raw")
        ],
        "4 players, frame_skip 1, 64x64: {0[0]:,} agent-frames/s, {0[1]:.2f}x the raw lockstep game",
    ),
    *(
        (
            "| payouts closed-loop, each scripted policy",
            "dynamics/dynamics.json",
            lambda d, k=k: "{paid} / {oracle_paid}".format(**d["shared"]["closed_loop"][k]),
            "{}",
        )
        for k in ("forage-v0", "push-v0")
    ),
    (
        "| closed-loop forage-v0: the model's repeat pickups",
        "dynamics/dynamics.json",
        lambda d: "{repeat_pickups} / {stayed_pickups}".format(**d["shared"]["closed_loop"]["forage-v0"]),
        "| {} |",
    ),
    (
        "| closed-loop push-v0: pushes the rule makes",
        "dynamics/dynamics.json",
        lambda d: _refused(d["shared"]["closed_loop"]["push-v0"]),
        "| {} |",
    ),
    (
        "| closed-loop push-v0: boxes that turned into ghosts",
        "dynamics/dynamics.json",
        lambda d: "{ghost_onsets} / {ghost_onsets_at_push}".format(**d["shared"]["closed_loop"]["push-v0"]),
        "| {} |",
    ),
]
# The load each quoted speed was measured under, as the README gives it: (anchor, file).
LOADS = [
    ("`python benchmarks/store_bench.py`", "store.json"),
    ("`python benchmarks/model_speed.py`", "model_speed.json"),
    ("`python benchmarks/autoreset.py`", "autoreset.json"),
    ("`python benchmarks/viewer_bench.py`", "viewer.json"),
    ("`python benchmarks/vector_speed.py", "vector_speed.json"),
    ("`python benchmarks/vizdoom_env.py`", "vizdoom/env.json"),
]


def expand(path: str) -> list[str]:
    """``a.{json,md}`` -> ``[a.json, a.md]`` (one brace group at a time)."""
    m = re.search(r"\{([^{}]*)\}", path)
    if m is None:
        return [path]
    return [q for alt in m.group(1).split(",") for q in expand(path[: m.start()] + alt + path[m.end() :])]


def citations(text: str) -> list[str]:
    """The results paths a text cites, relative to ``benchmarks/results/`` (the results root
    itself, named as where results live, is not a citation)."""
    found = []
    for raw in CITATION.findall(text):
        for path in expand(raw.rstrip(".,;:)")):
            rel = path.removeprefix("benchmarks/").removeprefix("results").strip("/")
            if rel and rel not in found:
                found.append(rel)
    return found


def provenance_json(rel: str) -> pathlib.Path:
    """The JSON that holds the provenance of cited results file ``rel``."""
    if rel.endswith(".json"):
        return RESULTS / rel
    if rel in WRITTEN_WITH:
        return RESULTS / WRITTEN_WITH[rel]
    if rel.endswith((".md", ".png")):
        return RESULTS / (rel.rsplit(".", 1)[0] + ".json")
    raise AssertionError(f"README cites {rel}: no rule for which JSON holds its provenance (add it to WRITTEN_WITH)")


def in_history(commit: str) -> bool | None:
    """Whether ``commit`` is HEAD or an ancestor of it (None: no git history here to ask)."""
    try:
        shallow = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    if shallow.returncode or shallow.stdout.strip() != "false":
        return None
    r = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT, capture_output=True)
    return r.returncode == 0


def provenance_problems(path: pathlib.Path) -> list[str]:
    """What keeps results JSON ``path`` from backing a README figure (empty: nothing)."""
    shown = path.relative_to(RESULTS) if path.is_relative_to(RESULTS) else path.name
    try:
        prov = json.loads(path.read_text())["provenance"]
    except (OSError, ValueError) as e:
        return [f"{shown} is not readable JSON ({e})"]
    except KeyError:
        return [f"{shown} has no provenance block (written before provenance was stamped)"]
    problems = []
    commit = str(prov.get("commit"))
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        problems.append(f"names no commit ({commit})")
    elif prov.get("dirty") is not False:
        problems.append(f"was written from {commit[:7]} with uncommitted changes: {prov.get('changed')}")
    elif in_history(commit) is False:
        problems.append(f"names commit {commit[:7]}, which is not in this repository's history")
    missing = {"cpu_model", "cores", "ram_gb", "python", "torch"} - set(prov.get("machine", {}))
    if missing:
        problems.append(f"records no machine {sorted(missing)}")
    if not all(len(prov.get("load", {}).get(k, [])) == 3 for k in ("start", "end")):
        problems.append("records no load average at the start and end")
    for role, ck in prov.get("checkpoints", {}).items():
        shipped = ROOT / ck["path"]
        if not shipped.is_relative_to(ROOT) or not shipped.exists():
            continue  # a checkpoint outside the repository: its hash is recorded, not comparable
        if sha256_of(shipped) != ck["sha256"]:
            problems.append(f"ran {role} checkpoint sha256 {ck['sha256'][:8]}, but {ck['path']} is another now")
    return [f"{shown} {p}" for p in problems]


def test_citations_are_read_from_prose_tables_and_braces():
    text = (
        "see `benchmarks/results/viewer.md`; | `python x.py` | `results/store.{json,md}` | 1 ms |\n"
        "![plot](benchmarks/results/suite/scaling.png) and results in benchmarks/results/.\n"
        "(`benchmarks/results/vizdoom/`, and runs/results/other.json is elsewhere)"
    )
    assert citations(text) == ["viewer.md", "store.json", "store.md", "suite/scaling.png", "vizdoom"]


def test_the_checks_fail_on_a_dirty_or_unstamped_file(tmp_path):
    from multiworld.bench.provenance import stamp

    good = stamp()
    assert good["commit"] is not None, "this test needs the repository's git history"
    stale = {"model": {"path": "multiworld/checkpoints/default", "sha256": "0" * 64}}
    cases = {
        "clean": {**good, "dirty": False},
        "dirty": {**good, "dirty": True, "changed": ["multiworld/x.py"]},
        "unknown": {**good, "commit": "0" * 40, "dirty": False},
        "stale": {**good, "dirty": False, "checkpoints": stale},
    }
    for name, prov in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"provenance": prov}))
    (tmp_path / "old.json").write_text(json.dumps({"commit": "abc1234", "machine": {}}))
    found = {p.stem: provenance_problems(p) for p in tmp_path.glob("*.json")}
    assert found["clean"] == []
    assert "uncommitted changes" in found["dirty"][0]
    assert "not in this repository's history" in found["unknown"][0]
    assert "is another now" in found["stale"][0]
    assert "no provenance block" in found["old"][0]


def test_every_cited_results_file_exists_and_comes_from_a_clean_commit():
    cited = citations(README.read_text())
    assert "store.json" in cited, f"the README's citations were not found (parsed: {cited})"
    problems = []
    for rel in cited:
        path = RESULTS / rel
        if not path.exists():
            problems.append(f"README cites benchmarks/results/{rel}, which does not exist")
            continue
        jsons = sorted(path.rglob("*.json")) if path.is_dir() else [provenance_json(rel)]
        for js in jsons:
            problems += provenance_problems(js) if js.is_file() else [f"{rel}: no {js.name} beside it"]
        if rel.endswith(".md") and jsons[0].is_file():
            commit = json.loads(jsons[0].read_text()).get("provenance", {}).get("commit")
            if commit and commit[:7] not in path.read_text():
                problems.append(f"{rel} names another commit than {jsons[0].name} ({commit[:7]}): not the same run")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("anchor, rel, value, fmt", FIGURES, ids=[f"{f[1]}:{f[3]}" for f in FIGURES])
def test_headline_figures_are_the_files_numbers(anchor, rel, value, fmt):
    lines = [line for line in README.read_text().splitlines() if anchor in line]
    assert len(lines) == 1, f"{len(lines)} README lines contain {anchor!r}"
    assert rel in citations(lines[0]), f"the README line with {anchor!r} cites no {rel}"
    quoted = fmt.format(value(json.loads((RESULTS / rel).read_text())))
    assert quoted in lines[0], f"README says {lines[0]!r}; {rel} holds {quoted!r}"


@pytest.mark.parametrize("anchor, rel", LOADS, ids=[f[1] for f in LOADS])
def test_quoted_speeds_state_the_load_they_were_measured_under(anchor, rel):
    (line,) = [line for line in README.read_text().splitlines() if anchor in line]
    load = json.loads((RESULTS / rel).read_text())["provenance"]["load"]
    quoted = f"load {load['start'][0]:g} at the start, {load['end'][0]:g} at the end"
    assert quoted in line, f"README says {line!r}; {rel} records {quoted!r}"
