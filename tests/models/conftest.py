"""Model fixtures: a random transformers Nemotron-H checkpoint shared by the session."""
import pytest

from tests.models.helpers import TINY_HF_CONFIG, make_hf_model, save_hf_model_dir


@pytest.fixture(scope="session")
def hf_tiny(tmp_path_factory):
    """(transformers model, checkpoint directory) of the tiny config."""
    model = make_hf_model(TINY_HF_CONFIG, seed=0)
    return model, save_hf_model_dir(model, tmp_path_factory.mktemp("hf_tiny"))


@pytest.fixture(scope="session")
def tiny_runner(hf_tiny):
    """The tiny checkpoint with time_step_clamp="always", so cached decode is exact."""
    from grpo_jax.models import load_hf_model
    from tests.models.helpers import Runner

    return Runner(load_hf_model(hf_tiny[1], time_step_clamp="always"))
