"""Novelty signals: per account, the values (countries, networks) it has been active from; a
success from a new value after enough failures alerts (the takeover after password guessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from correlator.baselines_frames import select
from correlator.baselines_signals import ACTION, NoveltySignal, signal_detection, window_ns
from correlator.baselines_state import Baselines
from marketguard.detections import Detection

__all__ = ["novelty_detections"]


def novelty_detections(
    signal: NoveltySignal, new: pd.DataFrame, context: pd.DataFrame, fresh: set[str],
    baselines: Baselines,
) -> list[Detection]:  # fmt: skip
    """Learn the entity/attribute values of the new events, then judge their successes."""
    failure = select(context, {ACTION: signal.failure})
    learnable = new[
        new["_fresh"] & new[signal.entity].notna() & ~select(new, {ACTION: signal.failure})
    ]
    seen = pd.concat(
        [
            learnable.loc[learnable[a].notna(), [signal.entity, a, "_t"]]
            .set_axis(["entity", "value", "first_seen"], axis=1)
            .assign(attribute=a)
            for a in signal.attributes
        ]
    )
    seen = seen.groupby(["entity", "attribute", "value"], as_index=False)["first_seen"].min()
    baselines.learn(signal.id, seen[["entity", "attribute", "value", "first_seen"]])
    wins = context[select(context, {ACTION: signal.success}) & context["event.id"].isin(fresh)]
    wins = wins[wins[signal.entity].notna()]
    if wins.empty:
        return []
    known = baselines.known(signal.id, sorted(set(wins[signal.entity])))
    history = known.groupby("entity")["first_seen"].min()
    wins = wins[wins[signal.entity].map(history).lt(wins["_t"]).fillna(False).astype(bool)]
    fails = context[failure & context[signal.entity].isin(set(wins[signal.entity]))]
    times = {e: np.sort(g.to_numpy()) for e, g in fails.groupby(signal.entity)["_t"]}
    span = window_ns(signal.window)
    known_by = {e: g for e, g in known.groupby("entity")}
    fails_by = {e: g for e, g in fails.groupby(signal.entity)}
    out = []
    for _, win in wins.iterrows():
        t = times.get(win[signal.entity], np.empty(0, np.int64))
        n = np.searchsorted(t, win["_t"], side="right") - np.searchsorted(t, win["_t"] - span)
        if n >= signal.min_failures:
            entity = win[signal.entity]
            out += _judge_success(signal, win, known_by[entity], fails_by[entity], span)
    return out


def _judge_success(
    signal: NoveltySignal, win: pd.Series, known: pd.DataFrame, fails: pd.DataFrame, span: int
) -> list[Detection]:
    entity, t = win[signal.entity], int(win["_t"])
    mine = known[(known["entity"] == entity) & (known["first_seen"] < t)]
    if mine.empty:
        return []  # no history: a new account, nothing to compare with
    new_values = {
        a: win[a] for a in signal.attributes
        if pd.notna(win[a]) and not ((mine["attribute"] == a) & (mine["value"] == win[a])).any()
    }  # fmt: skip
    before = fails[(fails[signal.entity] == entity) & fails["_t"].between(t - span, t)]
    if not new_values or len(before) < signal.min_failures:
        return []
    evidence = {
        signal.entity: entity, "failures": float(len(before)), "min_failures": float(signal.min_failures),
        "new": new_values,
        "known": {a: sorted(set(mine.loc[mine["attribute"] == a, "value"])) for a in signal.attributes},
    }  # fmt: skip
    end = win["@timestamp"].to_pydatetime()
    return [
        signal_detection(
            signal, "baseline_novelty",
            timestamp=end, event_ids=(*before["event.id"], win["event.id"]), evidence=evidence,
            group=((signal.entity, entity),), window_start=end - signal.window, window_end=end,
            value=float(len(before)),
        )
    ]  # fmt: skip

