"""The workplace assistant environment (NeMo Gym `workplace_assistant`, after WorkBench).

    from grpo_jax.envs.workplace import Sandbox, verify
    sandbox = Sandbox.from_csv_dir(".../csv_data/processed")        # or Sandbox.generate(seed)
    reward = verify(sandbox, predicted_calls, ground_truth_calls)    # 1.0 or 0.0

    env = WorkplaceEnvironment(sandbox)
    episode = env.start(task_row)                                    # a NeMo Gym JSONL row
    texts = episode.call_tools([ToolCall("email_search_emails", {"query": "budget"})])
    result = episode.finish()                                        # EpisodeResult(reward, info)

    rows = generate_tasks(sandbox, seed=0, n=1000, split="train")    # tasks with ground truth
"""
from grpo_jax.envs.workplace.constants import DEFAULT_NOW, NEMO_NOW, WORKBENCH_NOW, Flavor
from grpo_jax.envs.workplace.environment import (
    ENVIRONMENT_NAME, WorkplaceEnvironment, WorkplaceEpisode, WorkplaceOptions,
)
from grpo_jax.envs.workplace.prompts import system_prompt
from grpo_jax.envs.workplace.sandbox import Sandbox, World
from grpo_jax.envs.workplace.schemas import chat_tools, responses_tools
from grpo_jax.envs.workplace.tasks.expert import as_tool_calls
from grpo_jax.envs.workplace.tasks.generator import generate_tasks
from grpo_jax.envs.workplace.tasks.registry import FAMILIES, FAMILIES_BY_ID
from grpo_jax.envs.workplace.tools import TOOL_NAMES, WRITE_TOOL_NAMES
from grpo_jax.envs.workplace.verifier import Verdict, verify, verify_with_details

__all__ = [
    "DEFAULT_NOW", "ENVIRONMENT_NAME", "FAMILIES", "FAMILIES_BY_ID", "Flavor", "NEMO_NOW", "Sandbox",
    "TOOL_NAMES", "Verdict", "WORKBENCH_NOW", "WRITE_TOOL_NAMES", "WorkplaceEnvironment", "WorkplaceEpisode",
    "WorkplaceOptions", "World", "as_tool_calls", "chat_tools", "generate_tasks", "responses_tools",
    "system_prompt", "verify", "verify_with_details",
]
