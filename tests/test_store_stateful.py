"""Hypothesis state machine: random append / commit / fork / rewind / reopen against a list model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from multiworld.state import StepOutOfRangeError, WorldInUseError, WorldLockedError, WorldStore
from multiworld.state import synthetic as syn

SHAPES = syn.Shapes(size=4, agents=2, boxes=1, items=2, tokens=(2, 2), frame_hw=None)


def expected_row(key, t):
    """Row ``t`` whose model key is ``("init", seed)`` (row 0) or a salt (rows appended later)."""
    if isinstance(key, tuple):
        return syn.expected(key[1], 0, SHAPES)
    return syn.expected(key, t, SHAPES)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # tmpfs when there is one: the machine explores hundreds of stores (LocalBackend either way)
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = tempfile.mkdtemp(prefix="mw-store-", dir=shm)
        self.path = str(Path(self.tmp) / "store")
        self.store = WorldStore.open(self.path, mode="w", shard_rows=4)  # rows cross shard boundaries
        # world id -> committed row keys, pending row keys, parent (world, step) or None
        self.model: dict[str, dict] = {}
        self.writers = {}
        self.counter = 0

    # ------------------------------------------------------------------ helpers
    def _new_id(self) -> str:
        self.counter += 1
        return f"w{self.counter}"

    def _writer(self, wid):
        if wid not in self.writers:
            self.writers[wid] = self.store.writer(wid)
        return self.writers[wid]

    def _pick(self, data):
        return data.draw(st.sampled_from(sorted(self.model)), label="world")

    def _blocked(self, wid, step):
        return any(m["parent"] and m["parent"][0] == wid and m["parent"][1] > step for m in self.model.values())

    # ------------------------------------------------------------------ rules
    @initialize(seed=st.integers(0, 3), salts=st.lists(st.integers(0, 30), min_size=3, max_size=8))
    def first_world(self, seed, salts):
        """Start with one world that has a few committed rows, so forks and rewinds bite early."""
        wid = self._create(seed)
        for salt in salts:
            self._append(wid, salt, commit=True)

    @precondition(lambda self: len(self.model) < 4)
    @rule(seed=st.integers(0, 3))
    def create(self, seed):
        self._create(seed)

    def _create(self, seed):
        wid = self._new_id()
        self.writers[wid] = self.store.create_world(
            wid,
            syn.initial_state(seed, SHAPES),
            scenario="stateful",
            seed=seed,
            **SHAPES.world_kwargs(),
            **syn.initial_extras(seed, SHAPES),
        )
        self.model[wid] = {"rows": [("init", seed)], "pending": [], "parent": None}
        return wid

    @precondition(lambda self: self.model)
    @rule(data=st.data(), salts=st.lists(st.integers(0, 30), min_size=1, max_size=4), commit=st.booleans())
    def append(self, data, salts, commit):
        wid = self._pick(data)
        for i, salt in enumerate(salts):
            self._append(wid, salt, commit=commit and i == len(salts) - 1)

    def _append(self, wid, salt, commit):
        m = self.model[wid]
        t = len(m["rows"]) + len(m["pending"])
        row = syn.step_row(salt, t, SHAPES)
        assert self._writer(wid).append(row.pop("state"), **row, commit=commit) == t
        m["pending"].append(salt)
        if commit:
            m["rows"] += m["pending"]
            m["pending"] = []

    @precondition(lambda self: self.writers)
    @rule(data=st.data())
    def commit(self, data):
        wid = data.draw(st.sampled_from(sorted(self.writers)))
        m = self.model[wid]
        assert self.writers[wid].commit() == len(m["rows"]) + len(m["pending"])
        m["rows"] += m["pending"]
        m["pending"] = []

    @precondition(lambda self: self.model)
    @rule(data=st.data(), beyond=st.sampled_from([0, 0, 0, 1, 3]))
    def fork(self, data, beyond):
        wid = self._pick(data)
        m = self.model[wid]
        if beyond:
            try:
                self.store.fork(wid, len(m["rows"]) - 1 + beyond)
            except StepOutOfRangeError:
                return
            raise AssertionError("fork beyond the committed rows was accepted")
        self._fork(data, wid)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), salts=st.lists(st.integers(0, 30), min_size=1, max_size=3))
    def fork_and_extend(self, data, salts):
        child = self._fork(data, self._pick(data))
        for salt in salts if child else []:
            self._append(child, salt, commit=True)

    def _fork(self, data, wid):
        m = self.model[wid]
        if len(self.model) >= 7:
            return None
        step = data.draw(st.integers(0, len(m["rows"]) - 1), label="step")
        child = self.store.fork(wid, step, self._new_id())
        self.model[child] = {"rows": m["rows"][: step + 1], "pending": [], "parent": (wid, step)}
        return child

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def rewind(self, data):
        wid = self._pick(data)
        self._rewind(wid, data.draw(st.integers(0, len(self.model[wid]["rows"]) - 1), label="step"))

    @precondition(lambda self: any(m["parent"] for m in self.model.values()))
    @rule(data=st.data(), which=st.sampled_from(["parent below", "parent at", "child below"]), offset=st.integers(0, 2))
    def rewind_near_a_fork(self, data, which, offset):
        """Rewinds next to a fork point: refused for the parent below it, allowed at it and for the child."""
        child = data.draw(st.sampled_from(sorted(w for w, m in self.model.items() if m["parent"])), label="fork")
        parent, step = self.model[child]["parent"]
        if which == "parent below":
            self._rewind(parent, step - 1 - offset)
        elif which == "parent at":
            self._rewind(parent, step)
        else:
            self._rewind(child, step - 1 - offset)

    def _rewind(self, wid, step):
        m = self.model[wid]
        if not 0 <= step < len(m["rows"]):
            return
        blocked = self._blocked(wid, step)
        try:
            if wid in self.writers:
                self.writers[wid].rewind(step)
            else:
                self.store.rewind(wid, step)
        except WorldInUseError:
            assert blocked
            return
        assert not blocked
        m["rows"] = m["rows"][: step + 1]
        m["pending"] = []
        if m["parent"] and step < m["parent"][1]:
            m["parent"] = (m["parent"][0], step)

    @precondition(lambda self: self.writers)
    @rule(data=st.data())
    def second_writer_is_refused(self, data):
        wid = data.draw(st.sampled_from(sorted(self.writers)))
        try:
            self.store.writer(wid)
        except WorldLockedError:
            return
        raise AssertionError("a second writer was allowed")

    @rule(commit=st.booleans())
    def reopen(self, commit):
        for wid, w in self.writers.items():
            w.close(commit=commit)
            m = self.model[wid]
            if commit:
                m["rows"] += m["pending"]
            m["pending"] = []
        self.writers = {}
        self.store.close()
        self.store = WorldStore.open(self.path, mode="r+")

    # ------------------------------------------------------------------ checks
    @invariant()
    def committed_rows_match(self):
        assert self.store.worlds() == sorted(self.model)
        for wid, m in self.model.items():
            reader = self.store.world(wid)
            n = len(m["rows"])
            assert reader.steps == n, (wid, reader.steps, n)
            parent = reader.parent
            assert (parent["world"], parent["step"]) == m["parent"] if parent else m["parent"] is None
            t = n - 1
            np.testing.assert_array_equal(reader.poses(t, n)[0], expected_row(m["rows"][t], t)["poses"])

    def teardown(self):
        try:
            for wid, m in self.model.items():
                reader = self.store.world(wid)
                syn.assert_rows(reader, [expected_row(k, t) for t, k in enumerate(m["rows"])])
        finally:
            for w in self.writers.values():
                w.close(commit=False)
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


StoreMachine.TestCase.settings = settings(
    max_examples=40,
    database=None,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase
