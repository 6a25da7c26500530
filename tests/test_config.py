import pytest

from loramem import LoraSpec, ModelConfig, ReadConfig, SynthConfig, TrainConfig


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (LoraSpec, {"r": 0}, "r: expected an int >= 1, got 0"),
        (LoraSpec, {"target": "everything"}, "target: expected one of"),
        (LoraSpec, {"layers": (3, 1)}, "layers: expected"),
        (LoraSpec, {"init": "pissa", "use_dora": True}, "not 'pissa' together with DoRA"),
        (LoraSpec, {"dropout": 1.5}, "dropout"),
        (TrainConfig, {"lr": 0}, "lr: expected > 0"),
        (TrainConfig, {"target_recall": 1.5}, "target_recall"),
        (TrainConfig, {"seq_len": 64, "batch_tokens": 32}, "batch_tokens"),
        (SynthConfig, {"formats": ("qa", "poetry")}, "formats: expected each one of"),
        (SynthConfig, {"formats": ()}, "at least one format"),
        (ReadConfig, {"batch_size": 0}, "batch_size"),
        (ModelConfig, {"name": " "}, "name: expected a non-empty string"),
    ],
)
def test_invalid_config_names_the_value(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "obj",
    [
        LoraSpec(r=4, alpha=8, target="mlp", layers=(0, 2), use_rslora=True),
        LoraSpec(target=("q_proj", "v_proj")),
        TrainConfig(lr=1e-3, max_steps=10),
        SynthConfig(formats=("qa", "rewrite")),
        ReadConfig(max_new_tokens=8),
        ModelConfig(name="x/y"),
    ],
)
def test_configs_round_trip_through_json(obj):
    assert type(obj).from_json(obj.to_json()) == obj


def test_unknown_field_is_listed():
    with pytest.raises(ValueError, match="unknown fields \\['rank'\\]"):
        LoraSpec.from_dict({"rank": 4})


def test_help_text_is_written_once_per_field():
    assert all(LoraSpec.help().values())
    assert all(TrainConfig.help().values())
