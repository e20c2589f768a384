"""NeMo Gym's public example rows and rollouts, replayed on NeMo Gym's own sandbox.

The ground truth of the rollouts is rebuilt with our family logic from each task's text (the
parameters are read off the text at run time: names, subjects, products and numbers that occur
in it), and the same procedure must reproduce the stored ground truth of the example rows.
"""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from grpo_jax.envs.base import ToolCall
from grpo_jax.envs.workplace import FAMILIES_BY_ID, WorkplaceEnvironment, verify
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.scoring import predicted_calls, user_message
from grpo_jax.envs.workplace.tasks.facts import facts_of
from grpo_jax.envs.workplace.tasks.language import METRIC_WORDS, first_name

# Which family each public row belongs to (row order of the two files).
EXAMPLE_FAMILIES = ("E4", "C2", "R5", "R7", "R8")
ROLLOUT_FAMILIES = ("A1", "R8", "R2", "R3", "E1")


def _staff(text, sandbox):
    found = [(text.lower().find(first_name(a).lower()), a) for a in sandbox.directory
             if re.search(rf"\b{first_name(a)}\b", text, re.IGNORECASE)]
    return [address for _, address in sorted(found)]


def _owner(text, sandbox):
    return next(a for a in sandbox.directory if re.search(rf"\b{first_name(a)}'s\b", text, re.IGNORECASE))


def _longest_in(text, candidates):
    return max((c for c in candidates if isinstance(c, str) and c in text), key=len)


def _product(text):
    return next(p for p in C.PRODUCTS if p.lower() in text.lower())


def _day(text, sandbox):
    month, day = re.search(r"(January|February|March|April|May|June|July|August|September|October|November|"
                           r"December) (\d+)", text).groups()
    return dt.datetime.strptime(f"{sandbox.now.year} {month} {day}", "%Y %B %d").date().isoformat()


def _params(family, text, sandbox):
    facts = facts_of(sandbox)
    if family == "E1":
        return {"sender": _staff(text, sandbox)[0]}
    if family == "E4":
        return {"sender": _staff(text, sandbox)[0], "subject": _longest_in(text, facts.email_subjects),
                "reply": re.findall(r"(?<!\w)'([^']+)'(?!\w)", text)[-1]}
    if family == "C2":
        return {"date": _day(text, sandbox), "new_name": _longest_in(text, facts.event_names)}
    if family == "A1":
        metric = next(m for m, words in METRIC_WORDS.items() if words in text.lower())
        return {"metric": metric, "date": _day(text, sandbox),
                "plot_type": next(k for k in C.PLOT_TYPES if re.search(rf"\b{k}\b", text))}
    customers = [c["customer_name"] for c in facts.customers]
    if family in ("R2", "R3"):
        params = {"customer": _longest_in(text, customers)}
        return params if family == "R2" else {**params, "rep": _staff(text, sandbox)[0]}
    if family == "R5":
        owner = _owner(text, sandbox)
        receiver = next(a for a in _staff(text, sandbox) if a != owner)
        return {"rep": owner, "receiver": receiver, "product": _product(text)}
    if family == "R7":
        status = next(s for s in C.STATUSES if re.search(rf"\b{s.lower()}\b", text.lower()))
        return {"rep": _owner(text, sandbox), "status": status, "product": _product(text)}
    if family == "R8":
        return {"product": _product(text), "weeks": int(re.search(r"(\d+) weeks", text).group(1))}
    raise AssertionError(family)


def _rebuilt_ground_truth(family, row, sandbox):
    solution = FAMILIES_BY_ID[family].solve(facts_of(sandbox), _params(family, user_message(row), sandbox))
    return [{"name": w["name"], "arguments": json.dumps(w["arguments"])} for w in solution.writes]


def _decoded(calls):
    return [(c["name"], json.loads(c["arguments"])) for c in calls]


@pytest.mark.parametrize("index", range(len(EXAMPLE_FAMILIES)))
def test_example_ground_truth_scores_one_and_is_what_our_families_compute(index, nemo_examples, nemo_sandbox):
    row = nemo_examples[index]
    assert verify(nemo_sandbox, row["ground_truth"], row["ground_truth"]) == 1.0
    assert verify(nemo_sandbox, [], row["ground_truth"]) == 0.0
    rebuilt = _rebuilt_ground_truth(EXAMPLE_FAMILIES[index], row, nemo_sandbox)
    assert _decoded(rebuilt) == _decoded(row["ground_truth"])


@pytest.mark.parametrize("index", range(len(ROLLOUT_FAMILIES)))
def test_rollouts_replay_to_their_stored_reward_and_outputs(index, nemo_rollouts, nemo_sandbox):
    row = nemo_rollouts[index]
    ground_truth = _rebuilt_ground_truth(ROLLOUT_FAMILIES[index], row, nemo_sandbox)
    assert verify(nemo_sandbox, predicted_calls(row), ground_truth) == row["reward"]

    episode = WorkplaceEnvironment(nemo_sandbox).start({**row, "ground_truth": ground_truth})
    outputs = {item["call_id"]: item["output"] for item in row["response"]["output"]
               if item["type"] == "function_call_output"}
    for item in row["response"]["output"]:
        if item["type"] == "function_call":
            assert episode.call_tools([ToolCall(item["name"], item["arguments"])]) == [outputs[item["call_id"]]]
    assert episode.finish().reward == row["reward"]
