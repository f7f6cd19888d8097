"""Hub releases: the model card rendered from `model_card.md` and the model's real figures, and one-commit pushes.

A release folder holds the model at its root (`config.json`, `model.safetensors` and the modeling files, so that
`AutoModel.from_pretrained(repo, trust_remote_code=True)` works without this package), the scheduler in
`scheduler/` (so that `VideoFlexTokPipeline.from_pretrained(repo)` works) and the card as `README.md`.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from . import __version__
from .modeling.modeling_videoflextok import VideoFlexTokModel

TEMPLATE_PATH = Path(__file__).with_name("model_card.md")
CARD_TAGS = ["video-tokenizer", "videoflextok", "flextok", "fsq", "rectified-flow", "video"]
# the official releases and the data they were trained on (as stated by their authors)
KNOWN_SOURCES = {
    "EPFL-VILAB/videoflextok_d18_d28": {"datasets": [], "note": " (the official 256x256 release)"},
    "EPFL-VILAB/videoflextok_d18_d18_k600": {"datasets": ["kinetics-600"], "note": " (Kinetics-600)"},
}


def _count(module) -> str:
    total = sum(p.numel() for p in module.parameters())
    if total >= 1e9:
        return f"{total / 1e9:.2f}B"
    if total >= 1e6:
        return f"{total / 1e6:.1f}M"
    return f"{total / 1e3:.1f}k"


def render_model_card(
    model: VideoFlexTokModel,
    repo_id: str,
    description: str = "",
    license: str = "other",
    datasets: list[str] | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """The release card for `model`, every figure read from its config and weights."""
    config = model.config
    source = config.source_checkpoint or "trained with videoflextok_hf"
    source_repo = source.split("@")[0]
    known = KNOWN_SOURCES.get(source_repo, {})
    datasets = list(datasets if datasets is not None else known.get("datasets", []))
    if base_model is None and source_repo in KNOWN_SOURCES:
        base_model = source_repo
    card_data = ModelCardData(
        library_name="videoflextok_hf",
        license=license,
        tags=list(CARD_TAGS),
        datasets=datasets or None,
        base_model=base_model,
        pipeline_tag=None,
    )
    chunk, stride = config.chunk_size, config.frame_stride
    steps_per_chunk = model.tokens_per_chunk
    steps_stride = model.chunk_geometry.token_stride
    example_frames = config.num_frames_for_chunks(5)
    if config.compressor == "patchify":
        vae = "parameter-free causal space-to-depth compressor (4x time, 8x8 space), no learned VAE"
    else:
        vae = (
            f"VidTok v1 causal KL VAE, frozen (4x time, {config.vae_spatial_downsample_factor}x"
            f"{config.vae_spatial_downsample_factor} space, {config.vae_latent_channels} channels, width "
            f"{config.vae_base_channels})"
        )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        description=description,
        source_checkpoint=source,
        package_version=__version__,
        conversion_version=config.conversion_version or "n/a (native)",
        num_parameters=_count(model),
        vae_parameters=_count(model.vae),
        encoder_parameters=_count(model.encoder),
        decoder_parameters=_count(model.decoder),
        encoder_layers=config.encoder_num_layers,
        encoder_width=config.encoder_hidden_size,
        encoder_mask=config.encoder_attention_mask,
        decoder_layers=config.decoder_num_layers,
        decoder_width=config.decoder_hidden_size,
        decoder_mask=config.decoder_attention_mask,
        vae_description=vae,
        image_size=config.image_size,
        frame_height=config.frame_size[0],
        frame_width=config.frame_size[1],
        fps=f"{config.fps:g}",
        chunk_size=chunk,
        frame_stride=stride,
        overlap_frames=config.overlap_size_frames,
        steps_per_chunk=steps_per_chunk,
        steps_stride=steps_stride,
        example_frames=example_frames,
        example_steps=config.num_token_steps_for_chunks(5),
        example_seconds=f"{example_frames / config.fps:.0f}",
        num_registers=config.num_registers,
        codebook_size=f"{config.codebook_size:,}",
        fsq_levels=list(config.fsq_levels),
        training_data_note=known.get("note", ""),
    )


def save_release(model: VideoFlexTokModel, folder: str | os.PathLike, repo_id: str, **card_kwargs) -> Path:
    """Write a complete release folder: model + modeling code at the root, `scheduler/`, `README.md`."""
    from .pipeline import VideoFlexTokFlowMatchScheduler

    folder = Path(folder)
    model.save_pretrained(folder)
    VideoFlexTokFlowMatchScheduler().save_pretrained(folder / "scheduler")
    render_model_card(model, repo_id, **card_kwargs).save(folder / "README.md")
    return folder


def push_release(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload VideoFlexTok release",
) -> str:
    """Upload a release folder to `repo_id` in one commit (creating the repo and branch if needed)."""
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision, commit_message=commit_message
    )
    return getattr(info, "commit_url", str(info))
