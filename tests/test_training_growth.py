"""Growing a trained model to more tokens per step (training/growth.py) and the Trainer's `init_from` + `model`."""

import logging

import pytest
import torch
from helpers import randomize_, tiny_config

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import write_video
from videoflextok_hf.training import Trainer, TrainingConfig
from videoflextok_hf.training.growth import grow_registers

WIDE_REGISTER_TABLE = {"type": "learnable_sum", "max_sizes": [16, 16], "scaling": "absolute"}


def _small_model(num_registers=4):
    config = tiny_config(num_registers=num_registers, decoder_register_position_embedding=WIDE_REGISTER_TABLE)
    return randomize_(VideoFlexTokModel(config).eval())


def test_grown_model_keeps_the_first_tokens_and_every_other_weight():
    model = _small_model(4)
    grown = grow_registers(model, 12, generator=torch.Generator().manual_seed(0)).eval()
    assert grown.config.num_registers == 12
    old, new = model.state_dict(), grown.state_dict()
    assert old.keys() == new.keys()
    for key in old:
        if key != "encoder.registers":
            assert torch.equal(old[key], new[key]), key
    registers = new["encoder.registers"]
    assert torch.equal(registers[:, :4], old["encoder.registers"])
    # the new registers start near copies of the old ones (cyclically), but not identical to them
    assert torch.allclose(registers[:, 4:8], old["encoder.registers"], atol=0.2)
    assert not torch.equal(registers[:, 4:8], old["encoder.registers"])

    videos = torch.rand(2, 3, 17, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ids, grown_ids = model.encode(videos).token_ids, grown.encode(videos).token_ids
    assert grown_ids.shape == (2, 5, 12)
    # within a time step the encoder's registers are causal among themselves, so the first step's first 4
    # tokens never see the new registers (later steps attend to all of an earlier step's registers)
    assert torch.equal(grown_ids[:, 0, :4], ids[:, 0])


def test_grow_refuses_what_it_cannot_do():
    model = _small_model(4)
    with pytest.raises(ValueError, match="at least the 4 registers"):
        grow_registers(model, 2)
    with pytest.raises(ValueError, match="num_registers"):  # the decoder's register table holds 16
        grow_registers(model, 32)


def test_trainer_grows_init_from_and_refuses_other_architecture_keys(tmp_path):
    model = _small_model(4)
    model.save_pretrained(tmp_path / "init")
    video = torch.rand(3, 20, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_video(tmp_path / "clip.mp4", video, fps=8)
    common = dict(output_dir=str(tmp_path / "run"), videos=[str(tmp_path / "clip.mp4")], fps=[8.0], decode_size=32,
                  init_from=str(tmp_path / "init"), max_steps=1, batch_size=2, warmup_steps=1, save_every=10,
                  num_workers=0)
    trainer = Trainer(TrainingConfig.from_dict(common | {"model": {"num_registers": 8}}))
    grown = trainer.unwrapped
    assert grown.config.num_registers == 8 and grown.dtype == torch.float32
    assert torch.equal(grown.encoder.registers[:, :4].detach(), model.encoder.registers.detach())
    trainer.train()
    with pytest.raises(ValueError, match=r"may only set \['num_registers'\].*\['image_size'\]"):
        Trainer(TrainingConfig.from_dict(common | {"model": {"image_size": 64}}))


def test_clip_sampler_uses_the_frames_that_decode(tmp_path, monkeypatch, caplog):
    """A container index that lists more frames than the stream holds (real files do: an edit list one frame too
    long) must not make training fail: the sampler uses the frames that decode, and says so."""
    import videoflextok_hf.data as data
    from videoflextok_hf.training.data import ClipSampler

    video = torch.rand(3, 20, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_video(tmp_path / "clip.mp4", video, fps=8)
    real_probe = data.probe_video

    def overcounting_probe(path, name=None):
        info = real_probe(path, name)
        return type(info)(info.num_frames + 3, info.fps, info.width, info.height)

    monkeypatch.setattr(data, "probe_video", overcounting_probe)
    with caplog.at_level(logging.WARNING):
        sampler = ClipSampler([str(tmp_path)], clip_frames=17, image_size=32, fps=[8.0], decode_size=32)
    assert [v.shape[1] for v in sampler.videos] == [17]  # the 20 decodable frames, trimmed to one chunk
    assert "lists 23 frames but 20 decode" in caplog.text
