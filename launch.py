"""grpo_jax launcher.

    python launch.py --config=configs/workplace.py[:preset] [--config.grpo.num_prompts_per_step=8] --workdir=DIR

The resolved config is validated before anything is loaded or compiled, printed, and saved into
the work directory; the run resumes from the latest checkpoint there.
"""
import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file, e.g. configs/workplace.py:tiny.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (checkpoints, logs, plots, exports).")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Our own progress at INFO; the libraries (Orbax, JAX) only when something is wrong.
    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("grpo_jax")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    config = _CONFIG.value
    workdir = _WORKDIR.value or f"workdirs/{config.preset}"

    from grpo_jax import compile_log, config_checks, distributed  # after flag parsing: JAX starts here
    try:
        config_checks.validate_distributed(config)  # before waiting for the other processes
        distributed.set_cpu_devices(config.model.cpu_devices)
        distributed.initialize(config.distributed)
        config_checks.validate_config(config)       # device counts are global from here on
        compile_log.use_persistent_cache(           # before anything compiles
            config.compilation.cache_dir, min_compile_seconds=config.compilation.min_compile_seconds,
            max_gigabytes=config.compilation.max_gigabytes)
    except config_checks.ConfigError as error:
        sys.exit(f"invalid config: {error}")
    print(config, flush=True)

    from grpo_jax import trainer
    try:
        summary = trainer.run(config, workdir)
    except trainer.Preempted as stop:
        sys.exit(f"preempted: {stop}")
    except config_checks.ConfigError as error:  # found while building the task sets
        sys.exit(f"invalid config: {error}")
    print(f"done: {summary.get('val/accuracy', 'n/a')} final validation accuracy; outputs in {workdir}")


if __name__ == "__main__":
    app.run(main)
