"""Export a checkpoint of a run as a Hugging Face directory (safetensors, config.json, tokenizer).

    python -m grpo_jax.export --workdir=runs/tiny --out=/tmp/policy [--step=20]

The run's own config (WORKDIR/config.json) says which model and tokenizer it trained; the step
defaults to the latest checkpoint. The result loads with `grpo_jax.models.load_hf_model` and with
transformers' `NemotronHForCausalLM.from_pretrained`.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import ml_collections


def export_checkpoint(workdir: str | pathlib.Path, out_dir: str | pathlib.Path, step: int | None = None
                      ) -> pathlib.Path:
    from grpo_jax import trainer

    workdir = pathlib.Path(workdir)
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{config_file} does not exist: --workdir must be the work directory of a run")
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    run = trainer.Trainer(config, workdir, quiet=True, restore_step=step)
    try:
        if step is not None and run.start_step != step:
            raise ValueError(f"checkpoint step {step} could not be restored from {workdir}")
        return run.export(pathlib.Path(out_dir))
    finally:
        run.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    args = parser.parse_args(argv)
    print(f"wrote {export_checkpoint(args.workdir, args.out, args.step)}")


if __name__ == "__main__":
    main()
