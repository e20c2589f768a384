"""Command line of the workplace environment.

    python -m grpo_jax.envs.workplace generate --seed 0 --n 1000 --out tasks.jsonl \\
        [--split train|validation] [--sandbox DIR | --sandbox-seed K] [--families E1,C7]
    python -m grpo_jax.envs.workplace score --sandbox DIR rollouts.jsonl [--tasks tasks.jsonl]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections import Counter
from collections.abc import Sequence

from grpo_jax.envs.workplace.constants import DEFAULT_NOW
from grpo_jax.envs.workplace.sandbox import Sandbox
from grpo_jax.envs.workplace.scoring import score_rows
from grpo_jax.envs.workplace.tasks.generator import generate_tasks
from grpo_jax.envs.workplace.tasks.split import SPLITS, TRAIN


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grpo_jax.envs.workplace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)

    generate = commands.add_parser("generate", help="write tasks as NeMo Gym JSONL")
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--n", type=int, required=True, help="number of tasks")
    generate.add_argument("--out", type=pathlib.Path, required=True)
    generate.add_argument("--split", choices=SPLITS, default=TRAIN)
    generate.add_argument("--families", default="", help="comma-separated family ids (default: all)")
    generate.add_argument("--no-tools", action="store_true", help="leave the 27 schemas out of each row")
    _add_sandbox_arguments(generate)
    generate.set_defaults(run=_generate)

    score = commands.add_parser("score", help="verify stored rollouts and print accuracy per category")
    score.add_argument("rollouts", type=pathlib.Path)
    score.add_argument("--tasks", type=pathlib.Path, help="task rows giving the ground truth of rollouts without one")
    _add_sandbox_arguments(score)
    score.set_defaults(run=_score)
    return parser


def _add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sandbox", type=pathlib.Path, help="a WorkBench / NeMo Gym CSV directory")
    source.add_argument("--sandbox-seed", type=int, help="our generated company with this seed (default 0)")
    parser.add_argument("--now", default=DEFAULT_NOW, help=f"the sandbox clock (default {DEFAULT_NOW!r})")
    parser.add_argument("--flavor", choices=("auto", "nemo", "workbench"), default="auto",
                        help="tool semantics of a CSV sandbox (default: detect)")


def _sandbox(args: argparse.Namespace, default_seed: int | None) -> Sandbox | None:
    if args.sandbox is not None:
        return Sandbox.from_csv_dir(args.sandbox, now=args.now, flavor=args.flavor)
    seed = args.sandbox_seed if args.sandbox_seed is not None else default_seed
    return None if seed is None else Sandbox.generate(seed, now=args.now)


def _generate(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args, default_seed=0)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    rows = generate_tasks(sandbox, args.seed, args.n, args.split, families or None, include_tools=not args.no_tools)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    counts = Counter(row["category"] for row in rows)
    empty = sum(1 for row in rows if not row["ground_truth"])
    print(f"wrote {len(rows)} {args.split} tasks to {args.out} ({empty} with an empty answer)")
    for category, count in sorted(counts.items()):
        print(f"  {category:<52} {count}")
    return 0


def _score(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args, default_seed=None)
    rows = _read_jsonl(args.rollouts)
    tasks = _read_jsonl(args.tasks) if args.tasks else []
    print(score_rows(rows, sandbox, tasks).report())
    return 0


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
