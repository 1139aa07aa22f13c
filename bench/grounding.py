"""Benchmark of subtask grounding: accuracy of the sim's Grounder on the paraphrase set.

It owns reading `bench/data/grounding_paraphrases.json` and scoring the grounder against it:
a case that expects a refusal is right only if refused; any other case is right only if skill,
object, target and direction all match (a key missing from `expect` means None).
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.grounding import Grounder, Grounding
from sim.objects import SceneObject

DATA = Path(__file__).resolve().parent / "data" / "grounding_paraphrases.json"
FIELDS = ("skill", "object", "target", "direction")


def load_cases(path: Path = DATA) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def ground_case(grounder: Grounder, case: dict):
    objects = [SceneObject(name, kind, colour) for name, kind, colour in case["objects"]]
    return grounder.ground(case["text"], objects, case["places"], case.get("held"))


def is_correct(result, expect: dict) -> bool:
    if expect.get("refused"):
        return not isinstance(result, Grounding)
    if not isinstance(result, Grounding):
        return False
    return all(getattr(result, f) == expect.get(f) for f in FIELDS)


def run(grounder: Grounder | None = None, path: Path = DATA) -> dict:
    grounder = grounder or Grounder()
    cases = load_cases(path)
    failures, correct, refusals, refusals_correct = [], 0, 0, 0
    for case in cases:
        result = ground_case(grounder, case)
        ok = is_correct(result, case["expect"])
        correct += ok
        if case["expect"].get("refused"):
            refusals += 1
            refusals_correct += ok
        if not ok:
            failures.append({"text": case["text"][:120], "expect": case["expect"], "got": result.to_info()})
    return {
        "cases": len(cases),
        "accuracy": round(correct / len(cases), 4) if cases else 0.0,
        "refusal_cases": refusals,
        "refusal_accuracy": round(refusals_correct / refusals, 4) if refusals else 0.0,
        "failures": failures,
    }


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
