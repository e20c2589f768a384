"""Loading is offline: the tokenizer and the model come from a local directory and nothing tries
the network, even without HF_HUB_OFFLINE and with a bogus hub endpoint. A path that does not
exist (a hub id, say) fails at once with a message naming it, and does not fall back to a download.

Every socket connection and name lookup is refused and recorded while these run, so a silent
download attempt (one a library would catch and retry offline) still fails the test.
"""
from __future__ import annotations

import socket

import pytest

from grpo_jax import chat, config_checks
from grpo_jax.models import CheckpointError, load_hf_model

HUB_ID = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted while loading from a local directory")

    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                        (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)       # the code must not rely on it
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # and a download would go nowhere
    yield attempts
    assert not attempts, f"network attempts: {attempts}"


def test_tokenizer_and_model_load_from_a_local_directory_without_the_network(tiny_hf_dir, no_network):
    tokenizer = chat.load_tokenizer(tiny_hf_dir)
    assert chat.stop_token_ids(tokenizer)
    model = load_hf_model(tiny_hf_dir)
    assert model.config.vocab_size == len(tokenizer)


def test_a_missing_local_path_fails_fast_naming_it_and_never_downloads(tmp_path, monkeypatch, no_network,
                                                                        small_run_config):
    monkeypatch.chdir(tmp_path)  # so HUB_ID is certainly not a local directory
    with pytest.raises(ValueError, match=f"tokenizer directory '{HUB_ID}' does not exist"):
        chat.load_tokenizer(HUB_ID)
    with pytest.raises(CheckpointError, match=f"checkpoint directory {HUB_ID} does not exist"):
        load_hf_model(HUB_ID)
    small_run_config.model.path = HUB_ID
    with pytest.raises(config_checks.ConfigError, match="models are never downloaded"):
        config_checks.validate_config(small_run_config)
