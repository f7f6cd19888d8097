"""Hub releases: one repo, two front doors (transformers and diffusers remote code), the model card rendered from
`model_card.md` and the model's real figures, and one-commit pushes.

A release folder holds
- the model at its root (`config.json`, `model.safetensors` and the modeling files), so that
  `AutoModel.from_pretrained(repo, trust_remote_code=True)` encodes without this package;
- `model_index.json`, the pipeline code at the root (`pipeline_videoflextok.py`, `scheduling_flow_match.py`,
  `guidance.py`), the scheduler in `scheduler/` (config and code) and `model/` (the modeling code and a loader that
  points diffusers at the root weights), so that `DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`
  decodes without this package; with it, `VideoFlexTokPipeline.from_pretrained(repo)` needs no remote code;
- the card as `README.md`.
It is written with `atomic_update_dir`: an interrupted release leaves the old folder or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from . import __version__
from .modeling.modeling_videoflextok import VideoFlexTokModel
from .utils import atomic_update_dir

TEMPLATE_PATH = Path(__file__).with_name("model_card.md")
CARD_TAGS = ["video-tokenizer", "videoflextok", "flextok", "fsq", "rectified-flow", "video"]
# the official releases and the data they were trained on (as stated by their authors)
KNOWN_SOURCES = {
    "EPFL-VILAB/videoflextok_d18_d28": {"datasets": [], "note": " (the official 256x256 release)"},
    "EPFL-VILAB/videoflextok_d18_d18_k600": {"datasets": ["kinetics-600"], "note": " (Kinetics-600)"},
}
# the licence of the official code and checkpoints (the official Hub pages say "other"): EPFL / Apple's Sample Code
# License 1.1, non-commercial. `license="other"` without a name means this one.
OFFICIAL_LICENSE_NAME = "videoflextok-sample-code-license"
OFFICIAL_LICENSE_LINK = "https://github.com/apple/ml-videoflextok/blob/main/LICENSE"
# the Hub has no video-tokenizer task; the round trip (video -> tokens -> video) is a video-to-video model
PIPELINE_TAG = "video-to-video"
PIPELINE_DIR = Path(__file__).with_name("pipeline")
PIPELINE_FILES = ("pipeline_videoflextok.py", "scheduling_flow_match.py", "guidance.py")
RELEASE_MODEL_LOADER = Path(__file__).with_name("hub_files") / "videoflextok_model.py"


def describe_compressor(model: VideoFlexTokModel) -> str:
    """One line on the module under the tokenizer, from the module itself (one description per compressor class)."""
    config, vae = model.config, model.vae
    time, space, channels = config.vae_temporal_downsample_factor, config.vae_spatial_downsample_factor, config.vae_latent_channels
    geometry = f"{time}x time, {space}x{space} space, {channels} latent channels"
    descriptions = {
        "VidTokVAE": lambda: f"VidTok v1 causal KL VAE, frozen ({geometry}, width {config.vae_base_channels})",
        "DCTCompressor": lambda: (
            f"parameter-free causal 3-D DCT compressor, no learned VAE ({geometry}: the "
            f"{config.dct_coefficients_per_color} lowest frequencies of every {time}x{space}x{space} block per colour, "
            f"`{config.dct_normalization}` normalization)"
        ),
        "PatchifyCompressor": lambda: f"parameter-free causal space-to-depth compressor, no learned VAE ({geometry})",
    }
    kind = type(vae).__name__
    if kind not in descriptions:
        raise ValueError(f"no model-card description for the compressor class {kind}; add one to describe_compressor.")
    return descriptions[kind]()


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
    license_name: str | None = None,
    license_link: str | None = None,
) -> ModelCard:
    """The release card for `model`, every figure read from its config and weights. `license="other"` needs a
    `license_name` and `license_link`; without them it means the official VideoFlexTok licence."""
    config = model.config
    source = config.source_checkpoint or "trained with videoflextok_hf"
    source_repo = source.split("@")[0]
    known = KNOWN_SOURCES.get(source_repo, {})
    datasets = list(datasets if datasets is not None else known.get("datasets", []))
    if base_model is None and source_repo in KNOWN_SOURCES:
        base_model = source_repo
    if license == "other" and license_name is None and license_link is None:
        license_name, license_link = OFFICIAL_LICENSE_NAME, OFFICIAL_LICENSE_LINK
    if license == "other" and not (license_name and license_link):
        raise ValueError("license='other' needs both license_name and license_link (the Hub shows them).")
    # library_name "transformers": the Hub knows it and, the root config.json having an auto_map, its usage snippet
    # is `AutoModel.from_pretrained(repo, trust_remote_code=True)`; the diffusers front door is tagged and in the card
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        license_name=license_name if license == "other" else None,
        license_link=license_link if license == "other" else None,
        tags=list(CARD_TAGS) + ["diffusers", "custom_code"],
        datasets=datasets or None,
        base_model=base_model,
        pipeline_tag=PIPELINE_TAG,
    )
    chunk, stride = config.chunk_size, config.frame_stride
    steps_per_chunk = model.tokens_per_chunk
    steps_stride = model.chunk_geometry.token_stride
    example_frames = config.num_frames_for_chunks(5)
    decoding = config.decoding_defaults
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
        vae_description=describe_compressor(model),
        decoding_steps=decoding["num_inference_steps"],
        decoding_guidance=decoding["guidance"],
        decoding_scale=f"{decoding['guidance_scale']:g}",
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
    """Write a complete release folder (see the module docstring), crash-safe."""
    import diffusers
    from diffusers.utils.dynamic_modules_utils import get_relative_imports

    from .pipeline import VideoFlexTokFlowMatchScheduler

    folder = Path(folder)
    card = render_model_card(model, repo_id, **card_kwargs)  # errors (e.g. licence fields) before anything is written
    with atomic_update_dir(folder) as staging:
        model.save_pretrained(staging)  # config, weights and the modeling files (auto_map) at the root
        modeling_files = sorted(p.name for p in staging.glob("*.py"))
        # diffusers copies only the direct relative imports of a local custom component: the loader must name them all
        missing = {Path(name).stem for name in modeling_files} - set(get_relative_imports(RELEASE_MODEL_LOADER))
        if missing:
            raise RuntimeError(f"{RELEASE_MODEL_LOADER} must import every modeling module directly; add {sorted(missing)}.")
        (staging / "model").mkdir()
        for name in modeling_files:
            shutil.copy2(staging / name, staging / "model" / name)
        shutil.copy2(RELEASE_MODEL_LOADER, staging / "model" / RELEASE_MODEL_LOADER.name)
        VideoFlexTokFlowMatchScheduler().save_pretrained(staging / "scheduler")
        shutil.copy2(PIPELINE_DIR / "scheduling_flow_match.py", staging / "scheduler" / "scheduling_flow_match.py")
        for name in PIPELINE_FILES:
            shutil.copy2(PIPELINE_DIR / name, staging / name)
        model_index = {
            "_class_name": ["pipeline_videoflextok", "VideoFlexTokPipeline"],
            "_diffusers_version": diffusers.__version__,
            "model": [RELEASE_MODEL_LOADER.stem, "VideoFlexTokReleaseModel"],
            "scheduler": ["scheduling_flow_match", "VideoFlexTokFlowMatchScheduler"],
        }
        (staging / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
        card.save(staging / "README.md")
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
