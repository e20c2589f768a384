"""GRPO on the workplace assistant.

    python launch.py --config=configs/workplace.py            # NVIDIA-Nemotron-Nano-9B-v2, seed values
    python launch.py --config=configs/workplace.py:recipe     # NeMo RL's yaml values (64 x 16, seq 8192)
    python launch.py --config=configs/workplace.py:tiny       # the embedded tiny model on a laptop CPU
    python launch.py --config=configs/workplace.py --config.grpo.num_prompts_per_step=8

Presets are chosen by the argument after the colon; every value can then be overridden on the
command line. The default preset carries the NeMo Gym tutorial's seed values under their names.
"""
import ml_collections

# The tiny model's warm-start task families and the tools its prompt shows, and the families its
# GRPO run trains on: the two the warm start solves in part (see README, "The embedded tiny run").
TINY_FAMILIES = ("R1", "R2", "R4", "E3", "P2", "C11")
TINY_RL_FAMILIES = ("R1", "R2")
TINY_TOOLS = (
    "company_directory_find_email_address", "email_send_email", "calendar_create_event",
    "project_management_create_task", "customer_relationship_manager_search_customers",
    "customer_relationship_manager_update_customer", "customer_relationship_manager_delete_customer",
)
PRESETS = ("default", "recipe", "tiny", "tiny_sft")


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = "default"
    config.seed = 42
    config.mode = "grpo"  # "grpo" or "sft" (the supervised warm start through the same code)

    # --- model -----------------------------------------------------------------------------
    config.model = model = ml_collections.ConfigDict()
    model.model_name = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"
    # Local Hugging Face directory (config.json, *.safetensors, tokenizer files). Never downloaded.
    model.path = "checkpoints/NVIDIA-Nemotron-Nano-9B-v2"
    model.tokenizer_path = ""            # empty: the tokenizer lives in model.path
    model.max_total_sequence_length = 32768
    model.precision = "bfloat16"         # compute dtype; master weights stay in param_dtype
    model.param_dtype = "float32"
    # Operands of the chunked SSD scan's contractions (float32 accumulation either way): float32
    # is exact; bfloat16 rounds them as the fused Mamba kernels do (not yet timed on a GPU).
    model.ssd_matmul_dtype = "float32"
    model.tensor_model_parallel_size = 8
    model.fsdp_parallel_size = 1
    model.data_parallel_size = -1        # -1: whatever devices remain
    # XLA devices a CPU host splits into (applied by launch.py before JAX starts; GPUs and TPUs
    # are their own devices). -1: one per core this process may use, rounded down to a power of
    # two, at most 8. A decode step of the CPU benchmark model ran 1.7x faster as two devices
    # with half the batch each than as one device on two cores (docs/performance.md).
    model.cpu_devices = -1
    model.remat = "full"                 # per-block rematerialisation: none | full | dots_saveable
    model.attention_query_chunk = 512    # longer attention runs query chunk by query chunk
    # Training / log-prob attention kernel: "xla" (any device) or "cudnn" (GPU, bf16/fp16 only;
    # on an H100 the 8-block 9B slice's train step took 2.67 s with it against 3.12 s with
    # "xla", docs/performance.md). Prefill and decoding always use the XLA paths.
    model.attention_implementation = "xla"
    # transformers 5.24 clamps dt only in its chunked prefill; "always" keeps the sampler's
    # one-token decode and the trainer's full forward on the same math.
    model.time_step_clamp = "always"

    # --- GRPO ------------------------------------------------------------------------------
    config.grpo = grpo = ml_collections.ConfigDict()
    grpo.num_prompts_per_step = 4
    grpo.num_generations_per_prompt = 4
    grpo.max_num_steps = 10
    grpo.use_leave_one_out_baseline = True
    grpo.normalize_rewards = True
    grpo.use_dynamic_sampling = False
    grpo.dynamic_sampling_max_gen_batches = 10
    grpo.val_period = 10
    grpo.val_at_start = True
    grpo.val_at_end = True
    # Where the PPO "old" log-probs come from: "recompute" (trainer forward before the update,
    # as NeMo RL), or "sampler" (the log-probs recorded while sampling).
    grpo.old_logprobs = "recompute"

    # --- loss ------------------------------------------------------------------------------
    config.loss = loss = ml_collections.ConfigDict()
    loss.ratio_clip_min = 0.2
    loss.ratio_clip_max = 0.2
    loss.ratio_clip_c = 0.0               # dual clip constant; 0 switches it off
    loss.token_level_loss = True          # False: mean per sequence, then over sequences
    loss.reference_policy_kl_penalty = 0.0  # 0: no reference model is kept or run
    loss.reference_policy_kl_type = "k3"
    loss.kl_input_clamp_value = 20.0
    loss.kl_output_clamp_value = 10.0

    # --- optimizer -------------------------------------------------------------------------
    config.optimizer = opt = ml_collections.ConfigDict()
    opt.optimizer = "adam"                # AdamW with decoupled weight decay
    opt.lr = 5.0e-6
    opt.min_lr = 5.0e-7
    opt.weight_decay = 0.01
    opt.adam_beta1 = 0.9
    opt.adam_beta2 = 0.999
    opt.adam_eps = 1.0e-8
    opt.clip_grad = 1.0
    opt.schedule = "cosine"               # "cosine" (warmup, then lr -> min_lr) or "constant"
    opt.warmup_steps = 0
    opt.warmup_init_lr = 5.0e-7

    # --- training step ---------------------------------------------------------------------
    config.train = train = ml_collections.ConfigDict()
    train.micro_batch_size = 1            # trajectories per micro-batch (gradient accumulation)
    train.logprob_batch_size = 2          # trajectories per micro-batch of the no-grad forward
    train.length_bucket = 512             # trajectories are padded to a multiple of this
    # Trained tokens scored per row (the lm_head runs on these only) are padded to a multiple of
    # this. With length_bucket it sets how many update programs a run compiles: one per pair.
    train.position_bucket = 64
    train.logprob_chunk = 1024            # tokens per lm_head chunk when computing log-probs
    train.skip_nonfinite_updates = True

    # --- generation ------------------------------------------------------------------------
    config.generation = gen = ml_collections.ConfigDict()
    gen.temperature = 1.0
    gen.top_p = 1.0
    gen.top_k = 0
    gen.max_new_tokens_per_turn = 32768   # NeMo RL: bounded only by the total sequence length
    gen.enable_thinking = False           # NVIDIA's recipe trains with reasoning off
    gen.decode_chunk = 32                 # decode steps between checks that every row finished
    gen.decode_chunks_per_call = 8        # chunks one jitted decode call may run on the device
    gen.prefill_chunk = 4096
    gen.min_block_bucket = 16
    gen.cache_multiple = 512
    gen.min_attend_bucket = 1024          # decode reads the KV buffer up to a power-of-two bucket >= this
    gen.ssm_decode_update = "per_step"    # or "deferred": Mamba states written once per decode chunk

    # --- environment -----------------------------------------------------------------------
    config.env = env = ml_collections.ConfigDict()
    env.name = "workplace"
    env.max_steps = 6                     # model calls per episode (NeMo Gym simple_agent)
    env.sandbox = "generated"             # "generated" (our company) or "csv" (a WorkBench/NeMo CSV dir)
    env.sandbox_seed = 0
    env.csv_dir = ""
    env.now = "2023-11-30 23:59:00"
    env.task_seed = 1234
    env.train_sandboxes = 16              # training tasks rotate over this many generated companies
    env.task_block_size = 256             # training tasks are generated this many at a time
    env.families = ""                     # comma-separated family ids; empty = every family
    env.tool_names = ""                   # comma-separated tools shown to the model; empty = all 27
    env.tool_schema = "full"              # "full", "compact", "minimal" or "none" (small context windows)
    env.system_prompt = "full"            # "full" (NeMo Gym's text) or "short"

    # --- validation ------------------------------------------------------------------------
    config.validation = val = ml_collections.ConfigDict()
    val.num_tasks = 128
    val.seed = 4321
    val.temperature = 1.0                 # NeMo RL validates at T = 1, one generation per task
    val.batch_size = 64
    val.sandboxes = 1                     # generated sandboxes whose validation splits are used

    # --- checkpoints -----------------------------------------------------------------------
    config.checkpoint = ckpt = ml_collections.ConfigDict()
    ckpt.save_period = 6
    ckpt.max_to_keep = 3
    ckpt.keep_best = 1                    # plus the best by validation accuracy
    ckpt.export_hf = True                 # final policy as an HF directory in WORKDIR/hf_export

    # --- logging ---------------------------------------------------------------------------
    config.logging = log = ml_collections.ConfigDict()
    log.transcripts_per_step = 2
    log.tensorboard = True
    log.progress_bar = True

    # --- compilation -----------------------------------------------------------------------
    # JAX's persistent compilation cache, applied by launch.py before anything compiles: a program
    # an earlier run compiled with the same shapes, XLA flags and versions is loaded instead of
    # compiled again (a rerun or a resumed run skips most of its compile time). The directory holds
    # executables the trainer loads and runs: keep it where only you can write. "": off.
    config.compilation = comp = ml_collections.ConfigDict()
    comp.cache_dir = "~/.cache/grpo_jax/jax_compilation_cache"
    comp.min_compile_seconds = 1.0        # programs that compiled faster are not kept
    comp.max_gigabytes = 8.0              # least recently used programs go beyond this; 0: no bound

    # --- devices ---------------------------------------------------------------------------
    config.distributed = dist = ml_collections.ConfigDict()
    dist.enabled = False                  # jax.distributed.initialize for several hosts
    dist.coordinator_address = ""
    dist.num_processes = 1
    dist.process_id = 0
    return config


def _recipe(config: ml_collections.ConfigDict) -> None:
    """NeMo RL's examples/nemo_gym/grpo_workplace_assistant_nemotron_nano_v2_9b.yaml."""
    config.model.max_total_sequence_length = 8192
    config.model.tensor_model_parallel_size = 2
    config.grpo.num_prompts_per_step = 64
    config.grpo.num_generations_per_prompt = 16
    # The yaml sets 1,000,000 and stops after one epoch of NeMo's 1,255 training rows (19 steps
    # of 64); our task generator is unlimited, so the epoch length is written out.
    config.grpo.max_num_steps = 19
    config.grpo.val_at_end = False
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 13
    config.optimizer.warmup_init_lr = 5.0e-7
    config.generation.max_new_tokens_per_turn = 8192
    config.checkpoint.max_to_keep = 3


def _tiny(config: ml_collections.ConfigDict) -> None:
    """The embedded tiny model on a laptop CPU: same loop and code paths, small numbers."""
    config.model.model_name = "grpo_jax/tiny-workplace"
    config.model.path = "assets/tiny-workplace"
    config.model.max_total_sequence_length = 2048
    config.model.precision = "float32"
    config.model.tensor_model_parallel_size = 1
    # data_parallel_size stays -1: one data shard per CPU device (model.cpu_devices), since
    # XLA:CPU runs the decode step's small ops on one core whatever the device's thread pool.
    config.model.remat = "none"
    config.model.attention_query_chunk = 2048  # dense attention: the tiny run's sequences are short
    config.grpo.num_prompts_per_step = 8
    config.grpo.num_generations_per_prompt = 8
    config.grpo.max_num_steps = 20
    config.grpo.val_period = 20           # validation at steps 0 and 20
    config.optimizer.lr = 1.0e-4
    config.optimizer.min_lr = 1.0e-5
    config.optimizer.warmup_steps = 0
    config.train.micro_batch_size = 32
    config.train.logprob_batch_size = 64
    config.train.length_bucket = 128
    config.train.logprob_chunk = 512
    config.generation.max_new_tokens_per_turn = 256
    config.generation.decode_chunk = 16
    config.generation.prefill_chunk = 1024
    config.generation.cache_multiple = 256
    # Tiny episodes hold ~300 tokens: a 256-token floor halves the KV reads of a decode step on CPU.
    config.generation.min_attend_bucket = 256
    config.env.tool_names = ",".join(TINY_TOOLS)
    # The tiny model learns its 7 tools in the warm start; listing them would triple its context.
    config.env.tool_schema = "none"
    config.env.system_prompt = "short"
    config.env.families = ",".join(TINY_RL_FAMILIES)
    config.env.train_sandboxes = 64
    config.validation.num_tasks = 200
    config.validation.sandboxes = 3       # R1 and R2 hold ~110 validation tasks per sandbox
    config.validation.batch_size = 128
    config.checkpoint.save_period = 10
    config.checkpoint.max_to_keep = 2


def _tiny_sft(config: ml_collections.ConfigDict) -> None:
    """Supervised warm start of the tiny model on expert trajectories (same trainer, mode "sft")."""
    config.mode = "sft"
    config.model.path = "/tmp/tiny-workplace-init"
    config.env.families = ",".join(TINY_FAMILIES)
    config.validation.sandboxes = 1
    config.grpo.num_prompts_per_step = 32
    config.grpo.max_num_steps = 1500
    config.grpo.val_at_start = False
    config.grpo.val_period = 100
    config.validation.num_tasks = 64
    config.validation.temperature = 0.0   # greedy while warming up: the capability, not the luck
    config.optimizer.lr = 2.0e-3
    config.optimizer.min_lr = 1.0e-4
    config.optimizer.warmup_steps = 50
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.weight_decay = 0.0
    config.train.micro_batch_size = 32
    config.train.logprob_batch_size = 32
    config.checkpoint.save_period = 100
    config.checkpoint.max_to_keep = 20  # every warm-start candidate stays exportable


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = (arg or "default").strip() or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for configs/workplace.py; expected one of {PRESETS}")
    config = _base()
    config.preset = preset
    if preset == "recipe":
        _recipe(config)
    elif preset in ("tiny", "tiny_sft"):
        _tiny(config)
        if preset == "tiny_sft":
            _tiny_sft(config)
    return config
