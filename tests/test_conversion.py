"""Strict conversion of official checkpoints, and the released architectures on the meta device."""

import copy
import json
import shutil

import pytest
import torch
from conftest import REFERENCE_TINY, RELEASED_INFERRED
from safetensors.torch import load_file, save_file

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.conversion import (
    OriginalCheckpointError,
    config_from_original,
    convert_state_dict,
    load_original,
    read_original_config,
)
from videoflextok_hf.conversion.convert_original import main as convert_main


def _copy_official(tmp_path):
    folder = tmp_path / "official"
    shutil.copytree(REFERENCE_TINY / "official", folder)
    return folder


def _rewrite_weights(folder, edit):
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def test_missing_key_is_reported(tmp_path):
    folder = _copy_official(tmp_path)
    key = "video_tokenizer.decoder.module_dict.dec_latent_dropout.nullcond"
    _rewrite_weights(folder, lambda state: state.pop(key))
    with pytest.raises(OriginalCheckpointError, match="missing keys.*dec_latent_dropout.nullcond"):
        load_original(folder)


def test_unexpected_key_is_reported(tmp_path):
    folder = _copy_official(tmp_path)
    _rewrite_weights(folder, lambda state: state.update({"video_tokenizer.encoder.extra.weight": torch.zeros(2)}))
    with pytest.raises(OriginalCheckpointError, match=r"unexpected keys.*encoder\.extra\.weight"):
        load_original(folder)


def test_wrong_shape_is_reported(tmp_path):
    folder = _copy_official(tmp_path)
    key = "video_tokenizer.encoder.module_dict.enc_register_module.registers"
    _rewrite_weights(folder, lambda state: state.update({key: torch.zeros(5, 7, 64)}))
    with pytest.raises(OriginalCheckpointError, match="shape mismatches.*enc_register_module.registers"):
        load_original(folder)


def test_unknown_target_is_rejected_without_importing(tmp_path):
    folder = _copy_official(tmp_path)
    config = read_original_config(folder)
    config["video_flex_tok"]["encoder"]["module_dict"]["enc_transformer"]["_target_"] = "os.system"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(OriginalCheckpointError, match="allow-list.*os.system"):
        load_original(folder)


def test_unknown_module_argument_is_rejected():
    config = read_original_config(REFERENCE_TINY / "official")
    broken = copy.deepcopy(config)
    broken["video_flex_tok"]["decoder"]["module_dict"]["dec_transformer"]["use_rope"] = True
    with pytest.raises(OriginalCheckpointError, match="dec_transformer.*unknown arguments.*use_rope"):
        config_from_original(broken, {"base_channels": 4})


def test_corrupt_weights_file_is_reported(tmp_path):
    folder = _copy_official(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(OriginalCheckpointError, match="model.safetensors.*re-download"):
        load_original(folder)


def test_cli_reports_errors_cleanly(tmp_path):
    with pytest.raises(SystemExit, match="videoflextok-convert: .*config.json not found"):
        convert_main(["--src", str(tmp_path), "--dst", str(tmp_path / "out")])


def test_sorted_config_order_changes_the_model(tmp_path):
    # module_dict order is execution order: a config written with sorted keys no longer describes the same
    # network (enc_to_latents before enc_transformer), which the converter must refuse rather than reinterpret.
    config = read_original_config(REFERENCE_TINY / "official")
    module_dict = config["video_flex_tok"]["encoder"]["module_dict"]
    config["video_flex_tok"]["encoder"]["module_dict"] = dict(sorted(module_dict.items()))
    with pytest.raises(OriginalCheckpointError):
        config_from_original(config, {"base_channels": 4})


def _meta_state_dict(keys_file):
    state = {}
    for line in keys_file.read_text().splitlines():
        key, shape = line.split("\t")
        state[key] = torch.empty(json.loads(shape), device="meta")
    return state


@pytest.mark.parametrize("name", ["d18_d28", "d18_d18_k600"])
def test_released_architectures_on_meta(name):
    folder = RELEASED_INFERRED / name
    summary = json.loads((folder / "summary.json").read_text())
    config, parsed = config_from_original(json.loads((folder / "config.json").read_text()))
    with torch.device("meta"):
        model = VideoFlexTokModel(config)
    assert all(p.device.type == "meta" for p in model.parameters())
    original = _meta_state_dict(folder / "keys.txt")
    assert len(original) == summary["num_tensors"]
    converted = convert_state_dict(original, model, parsed)  # strict: raises on any key or shape difference
    assert set(converted) == set(model.state_dict())
    counts = {
        "vae": sum(p.numel() for p in model.vae.parameters()),
        "encoder": sum(p.numel() for p in model.encoder.parameters()),
        "decoder": sum(p.numel() for p in model.decoder.parameters()),
    }
    assert counts == summary["params_by_component"]
    assert sum(counts.values()) == summary["num_params"]
    adaln = sum(p.numel() for n, p in model.decoder.named_parameters() if "modulation" in n)
    assert adaln == summary["num_params_adaLN"]
    expected_size = 256 if name == "d18_d28" else 128
    assert config.image_size == expected_size and config.num_registers == 256
