"""Model options have one source of defaults, the dataclass configs: a named architecture sets
only what differs from them, and every path to a model (fairseq-train's argparse, a hydra config
naming an architecture) ends with the same values."""

import argparse
import dataclasses

import pytest

from .fairseq_helpers import resolved_defaults

pytest.importorskip("fairseq")

from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_INV_REGISTRY  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from fairseq_revrnn.models import rev_rnn, rev_rnn_lm  # noqa: E402

MODELS = [("rev_rnn", rev_rnn, rev_rnn.RevRNNConfig), ("rev_rnn_lm", rev_rnn_lm, rev_rnn_lm.RevRNNLMConfig)]
TASKS = {
    "rev_rnn": {"max_source_positions": 1024, "max_target_positions": 1000},
    "rev_rnn_lm": {"tokens_per_sample": 512},
}


def defaults(config) -> dict:
    """The dataclass defaults as written (tied ones still ``${...}``), by option."""
    instance = config()
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(config) if not f.name.startswith("_")}


@pytest.mark.parametrize("model_name, module, config", MODELS, ids=["rev_rnn", "rev_rnn_lm"])
def test_architectures_write_no_default_a_second_time(model_name, module, config):
    options = defaults(config)
    assert set(ARCH_MODEL_INV_REGISTRY[model_name]) - {model_name} == set(module.ARCHITECTURES)
    for arch, settings in module.ARCHITECTURES.items():
        for name, value in settings.items():
            assert name in options, f"{arch} sets {name}, which is no option of {config.__name__}"
            assert value != options[name], f"{arch} writes the default {name}={value!r} a second time"


@pytest.mark.parametrize("model_name, module, config", MODELS, ids=["rev_rnn", "rev_rnn_lm"])
def test_an_architecture_sets_its_settings_over_the_defaults_and_nothing_else(model_name, module, config):
    for arch, settings in module.ARCHITECTURES.items():
        args = argparse.Namespace()
        ARCH_CONFIG_REGISTRY[arch](args)
        assert vars(args) == {**defaults(config), **settings}, arch


@pytest.mark.parametrize("model_name, module, config", MODELS, ids=["rev_rnn", "rev_rnn_lm"])
def test_a_hydra_config_naming_an_architecture_gets_the_same_values(model_name, module, config):
    """fairseq-hydra-train with ``model._name=<architecture>`` merges no dataclass: the
    architecture function fills the defaults, tied ones resolving in the full config."""
    for arch, settings in module.ARCHITECTURES.items():
        root = OmegaConf.create({"task": TASKS[model_name], "model": {"_name": arch}})
        OmegaConf.set_struct(root, True)
        with open_dict(root.model):
            ARCH_CONFIG_REGISTRY[arch](root.model)
        model = OmegaConf.to_container(root, resolve=True)["model"]
        assert model == {"_name": arch, **resolved_defaults(config, TASKS[model_name], settings)}, arch


def test_user_options_win_and_the_decoder_follows_the_encoder():
    root = OmegaConf.create({
        "task": TASKS["rev_rnn"],
        "model": {"_name": "rev_gru_iwslt", "encoder_hidden_size": 48, "decoder_embed_dim": 32, "attention": "emb"},
    })  # fmt: skip
    with open_dict(root.model):
        ARCH_CONFIG_REGISTRY["rev_gru_iwslt"](root.model)
    model = OmegaConf.to_container(root, resolve=True)["model"]
    assert (model["encoder_hidden_size"], model["decoder_hidden_size"]) == (48, 48)
    assert (model["encoder_embed_dim"], model["decoder_embed_dim"]) == (600, 32)
    assert (model["encoder_layers"], model["decoder_layers"]) == (2, 2)
    assert model["attention_slice_dim"] is None, "the paper's slice size only where the attention keeps a slice"
    assert (model["cell_type"], model["max_forget_bits"]) == ("gru", "5")


def parsed_model(*args: str, task: str = "translation") -> tuple[dict, dict]:
    """The model and task cfgs fairseq-train builds from ``args`` (argparse, then omegaconf)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from .data import PLUGIN

    parser = options.get_training_parser()
    namespace = options.parse_args_and_arch(parser, ["data", "--user-dir", str(PLUGIN), "--task", task, *args])
    cfg = convert_namespace_to_omegaconf(namespace)
    return OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.task)


@pytest.mark.parametrize(
    "args, task, expected",
    [
        (["--arch", "rev_lstm", "--encoder-embed-dim", "40", "--encoder-hidden-size", "48", "--encoder-layers", "2"],
         "translation", {"decoder_embed_dim": 40, "decoder_hidden_size": 48, "decoder_layers": 2}),
        (["--arch", "rev_lstm_iwslt", "--attention", "emb"], "translation",
         {"encoder_hidden_size": 600, "decoder_hidden_size": 600, "attention_slice_dim": None}),
        (["--arch", "rev_lstm_iwslt", "--attention-slice-dim", "8"], "translation", {"attention_slice_dim": 8}),
        (["--arch", "rev_gru_lm", "--tokens-per-sample", "30"], "language_modeling",
         {"cell_type": "gru", "tokens_per_sample": 30}),
    ],
)  # fmt: skip
def test_fairseq_train_arguments_resolve_the_tied_defaults(args, task, expected):
    model, _ = parsed_model(*args, task=task)
    assert {k: model[k] for k in expected} == expected


@pytest.mark.parametrize("model_name, module, config", MODELS, ids=["rev_rnn", "rev_rnn_lm"])
def test_each_architecture_alone_gives_its_settings_over_the_defaults(model_name, module, config):
    task = "translation" if model_name == "rev_rnn" else "language_modeling"
    for arch, settings in module.ARCHITECTURES.items():
        model, task_cfg = parsed_model("--arch", arch, task=task)
        assert model == {"_name": arch, **resolved_defaults(config, task_cfg, settings)}, arch
