#!/usr/bin/env python
"""Throughput, per-stage time, peak memory and decoder MFU of VideoFlexTok (random weights).

This is a benchmark script, not a test: it asserts nothing about speed and is not collected by pytest. It prints a
markdown table and (with `--json`) writes every measurement as JSON. See benchmarks/README.md for the latest numbers.

Measurements (each in its own forked child process, so peak memory of one measurement is never mixed with another):
    matmul          fp32 (or --dtype) square matmul throughput of this machine, the MFU denominator
    vae_encode      VidTok VAE encode of one 17-frame clip per sample (posterior mode)
    vae_decode      VidTok VAE decode of the matching latents
    vae_*_baseline  the same with the official-code layout (frames folded into the batch for 2-D convs, pixels folded
                    into the batch for 1-D temporal convs, out-of-place temporal-upsample mixing, encoder keeping every
                    level's activations in a list): a straightforward baseline measured on the same machine
    encoder         the encoder transformer on one chunk of VAE latents (+ FSQ)
    decoder_step    one decoder forward (`predict_velocity`) on one chunk, batch = number of sequences; a guided
                    sampling step runs it on 2 x B sequences (conditional + null condition in one batch)
    tokenize        `model.encode(videos)` end to end (chunking, VAE, encoder, FSQ) for B videos of T frames
    detokenize      `model.detokenize(token_ids, num_inference_steps=S)` end to end (APG guidance at the default
                    scale, i.e. 2B sequences per decoder call; VAE decode; chunk-by-chunk conditioning)

Peak memory: on CPU the child's peak resident set size (VmHWM, reset with /proc/self/clear_refs after the model is
built, so it covers the measured calls only; the figure includes weights and the Python/torch runtime, and the
"above weights" column subtracts the RSS right before the measured calls); on CUDA torch.cuda.max_memory_allocated
(reset after the model is built).

MFU = analytic model FLOPs of the timed call / its time / the matmul FLOP/s measured in the same child process.
Attention FLOPs are counted dense (the useful work; the segmented attention skips the masked-out key blocks, so
MFU counts the skipped ones as done), 2 FLOPs per multiply-add; the last layer counts the read-out rows' queries,
attention and MLP only (the rows whose outputs are discarded are not useful work, and the model skips them).

Examples:
    python benchmarks/run_benchmarks.py --quick                       # tiny config, < 1 min on 2 CPU cores
    python benchmarks/run_benchmarks.py --configs mid --device cpu --num-inference-steps 4 --json mid.json
    python benchmarks/run_benchmarks.py --configs released --device cuda --dtype bfloat16 --json released.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

try:  # run from a checkout without installing
    import videoflextok_hf  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from videoflextok_hf import VideoFlexTokConfig, VideoFlexTokModel
from videoflextok_hf.modeling import vidtok
from videoflextok_hf.modeling.modeling_videoflextok import (
    VideoFlexTokDecoder,
    VideoFlexTokEncoder,
    build_compressor,
)
from videoflextok_hf.modeling.transformer import linear

# Official VAE figures (docs vae-spec.md section 5: official code, 2-core CPU, 2 threads, fp32, one 17x256x256 clip)
OFFICIAL_VAE_CPU = {"encode_s": 82.9, "decode_s": 131.1, "peak_rss_gb": 8.2}

_TINY_POS = {"type": "learnable_sum", "max_sizes": [8, 8, 8], "scaling": "absolute"}
CONFIGS = {
    # the tiny test architecture (tests/helpers.py: tiny_config)
    "tiny": {
        "image_size": 32,
        "vae_base_channels": 4,
        "num_registers": 8,
        "register_max_frames": 5,
        "encoder_hidden_size": 32,
        "encoder_num_layers": 1,
        "encoder_head_dim": 16,
        "decoder_hidden_size": 32,
        "decoder_num_layers": 1,
        "decoder_head_dim": 16,
        "encoder_patch_position_embedding": _TINY_POS,
        "decoder_patch_position_embedding": _TINY_POS,
        "decoder_register_position_embedding": {"type": "learnable_sum", "max_sizes": [8, 8], "scaling": "absolute"},
    },
    # width 512, depth 8 transformers; 128x128 frames, 64 registers per step and a narrow VidTok (base width 32,
    # same structure as the released VAE) so that end-to-end runs fit a CPU
    "mid": {
        "image_size": 128,
        "vae_base_channels": 32,
        "num_registers": 64,
        "encoder_hidden_size": 512,
        "encoder_num_layers": 8,
        "encoder_head_dim": 64,
        "decoder_hidden_size": 512,
        "decoder_num_layers": 8,
        "decoder_head_dim": 64,
    },
    # the released EPFL-VILAB/videoflextok_d18_d28 shapes (VideoFlexTokConfig defaults: 256x256, VidTok 4x8x8,
    # encoder 1152 x 18, decoder 1792 x 28, 256 registers; 2.62 B parameters as in the inferred released config)
    "released": {},
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ----------------------------------------------------------------------------------------------------------------
# FLOP counts


def transformer_flops(config: VideoFlexTokConfig, side: str, batch: int, latent_steps: int) -> float:
    """Forward FLOPs of the encoder or decoder transformer on one chunk of `latent_steps` latent frames."""
    dim = getattr(config, f"{side}_hidden_size")
    layers = getattr(config, f"{side}_num_layers")
    pt, ph, pw = getattr(config, f"{side}_patch_size")
    steps = latent_steps // pt
    patches = steps * (config.latent_size // ph) * (config.latent_size // pw)
    registers = steps * (config.eval_registers if side == "encoder" else config.num_registers)
    length = patches + registers
    hidden = int(dim * getattr(config, f"{side}_mlp_ratio"))
    gated = getattr(config, f"{side}_gated_mlp")
    if gated:
        hidden = int(2 * hidden / 3)
    mlp = (3 if gated else 2) * dim * hidden
    per_layer = 2 * length * (4 * dim * dim + mlp) + 4 * length * length * dim  # linears + dense QK^T and AV
    # the last layer computes queries, attention and MLP for the rows read out only (registers / patches); every
    # row is still a key and a value there
    read = registers if side == "encoder" else patches
    last_layer = 2 * length * 2 * dim * dim + 2 * read * (2 * dim * dim + mlp) + 4 * read * length * dim
    patch_in = config.vae_latent_channels * pt * ph * pw
    flops = 2 * patches * patch_in * dim
    if layers:
        flops += (layers - 1) * per_layer + last_layer
    if side == "decoder":
        flops += 2 * patches * dim * patch_in  # output head
        flops += 2 * registers * config.fsq_dim * dim  # register embedding
        flops += layers * 2 * dim * 12 * dim + 2 * dim * 2 * dim  # adaLN projections (once per sample)
    else:
        flops += 2 * registers * dim * config.fsq_dim  # FSQ head
    return float(batch * flops)


def measure_matmul(device: str, dtype: torch.dtype, seconds: float = 1.0) -> dict:
    """Best-of throughput of a large square matmul (the MFU denominator): the faster of `torch.mm` and the package's
    own `transformer.linear` (oneDNN on the CPU, which beats MKL's sgemm on AMD CPUs), so the MFU is measured
    against the best rate this process can reach."""
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    kernels = {"torch.mm": lambda: torch.mm(a, b, out=out), "transformer.linear": lambda: linear(a, b)}
    rates = {}
    with torch.no_grad():
        for name, kernel in kernels.items():
            kernel()
            _sync(device)
            best, start = math.inf, time.perf_counter()
            runs = 0
            while runs < 3 or (time.perf_counter() - start < seconds and runs < 50):
                t0 = time.perf_counter()
                kernel()
                _sync(device)
                best = min(best, time.perf_counter() - t0)
                runs += 1
            rates[name] = 2 * n**3 / best
    fastest = max(rates, key=rates.get)
    return {"n": n, "flops_per_s": rates[fastest], "kernel": fastest, "rates": rates}


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak(device: str) -> int:
    """Reset the peak-memory counter; returns the current memory in bytes (the 'weights' level)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass
    return _rss_kb("VmRSS") * 1024


def _peak(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return _rss_kb("VmHWM") * 1024


def fast_randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights in place (uniform, ~0.5 / sqrt(fan_in)); no zero gates, no large temporaries."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            if param.device.type == "cpu":
                bound = 0.5 * math.sqrt(3.0 / max(param.shape[-1], 1)) if param.dim() > 1 else 0.05
                param.uniform_(-bound, bound, generator=generator)
            else:
                bound = 0.5 * math.sqrt(3.0 / max(param.shape[-1], 1)) if param.dim() > 1 else 0.05
                param.uniform_(-bound, bound)
    return module


def build_config(name: str) -> VideoFlexTokConfig:
    config = VideoFlexTokConfig(**CONFIGS[name])
    # standalone encoder / decoder modules use the attention the full model dispatches to (SDPA)
    config._attn_implementation = "sdpa"
    return config


def _materialize(factory, device: str, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """Build a module on the meta device, allocate it on `device` and fill it with random weights (skips the slow
    default initialisation of multi-billion-parameter modules)."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device=device)
    fast_randomize_(module, seed)
    # mix factors start at 2.0 in VidTok; keep the value range realistic
    for name, param in module.named_parameters():
        if name.endswith("mix_factor"):
            with torch.no_grad():
                param.fill_(2.0)
    return module.to(dtype).eval().requires_grad_(False)


def _build_vae(config: VideoFlexTokConfig, device, dtype):
    return _materialize(lambda: build_compressor(config), device, dtype)


def _build_model(config: VideoFlexTokConfig, device, dtype) -> VideoFlexTokModel:
    with torch.device("meta"):
        model = VideoFlexTokModel(config)
    model = model.to_empty(device=device)
    fast_randomize_(model)
    for name, param in model.named_parameters():
        if name.endswith("mix_factor"):
            with torch.no_grad():
                param.fill_(2.0)
    return model.to(dtype).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------
# official-layout VAE baseline (patched into the child process only)


def _baseline_frame_conv2d(self, x):
    batch, channels, frames, height, width = x.shape
    folded = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    out = F.conv2d(folded, self.weight, self.bias, self.stride, self.padding)
    return out.reshape(batch, frames, *out.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


def _baseline_causal_conv1d(self, x):
    batch, channels, frames, height, width = x.shape
    folded = x.permute(0, 3, 4, 1, 2).reshape(batch * height * width, channels, frames)
    out = F.conv1d(F.pad(folded, (self.time_padding, 0)), self.conv.weight, self.conv.bias)
    return out.reshape(batch, height, width, channels, -1).permute(0, 3, 4, 1, 2).contiguous()


def _baseline_temporal_upsample(self, x):
    alpha = torch.sigmoid(self.mix_factor)
    repeated = F.interpolate(x.float(), scale_factor=(2.0, 1.0, 1.0), mode="nearest").to(x.dtype)
    # the causal 3-tap conv run on the repeated frames (two zero frames in front)
    convolved = vidtok.FrameTapsConv3d.forward(self.conv.conv, F.pad(repeated, (0, 0, 0, 0, 2, 0)))
    return alpha * repeated + (1 - alpha) * convolved


def _baseline_encoder_forward(self, x, latent_frames_per_chunk=None):  # one pass, as the official code
    if x.shape[2] % self.temporal_factor != 0:
        first = x[:, :, :1].repeat(1, 1, self.temporal_factor - 1, 1, 1)
        x = torch.cat([first, x], dim=2)
    hs = [self.conv_in(x)]  # the official encoder keeps every level's activations
    for spatial, temporal in zip(self.down, self.down_temporal):
        for spatial_block, temporal_block in zip(spatial.block, temporal.block):
            hs.append(temporal_block(spatial_block(hs[-1])))
        if hasattr(spatial, "downsample"):
            hs.append(spatial.downsample(hs[-1]))
        if hasattr(temporal, "downsample"):
            hs.append(temporal.downsample(hs[-1]))
    h = self.mid(hs[-1])
    return self.conv_out(F.silu(self.norm_out(h)))


def install_vae_baseline() -> None:
    vidtok._silu = F.silu  # out-of-place activations
    vidtok.FrameConv2d.forward = _baseline_frame_conv2d
    vidtok.CausalConv1d.forward = _baseline_causal_conv1d
    vidtok.TemporalUpsample.forward = _baseline_temporal_upsample
    vidtok.VidTokEncoder.forward = _baseline_encoder_forward
    vidtok.VidTokVAE.use_framewise_encoding = vidtok.VidTokVAE.use_framewise_decoding = False  # whole clips


# ----------------------------------------------------------------------------------------------------------------
# stage timers for end-to-end runs


class StageTimer:
    """Wraps methods of live objects to accumulate their wall time (synchronised on CUDA)."""

    def __init__(self, device: str):
        self.device = device
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.active = True

    def wrap(self, obj, attr: str, name: str) -> None:
        original = getattr(obj, attr)

        def timed(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            _sync(self.device)
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(self.device)
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0
            self.calls[name] = self.calls.get(name, 0) + 1
            return out

        setattr(obj, attr, timed)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


# ----------------------------------------------------------------------------------------------------------------
# one measurement (runs inside a forked child)


def _timed(fn, device: str, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def run_job(job: dict) -> dict:
    device, dtype = job["device"], DTYPES[job["dtype"]]
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    kind, batch, frames = job["kind"], job["batch"], job.get("frames", 17)
    config = build_config(job["config"])
    repeats, warmup = job["repeats"], job["warmup"]
    if kind not in ("tokenize", "detokenize"):
        repeats = job.get("stage_repeats", repeats)
    size = config.image_size
    result = {"notes": []}
    matmul = None
    if kind == "matmul":
        matmul = measure_matmul(device, dtype)
        if device == "cuda":
            matmul["gpu"] = torch.cuda.get_device_name(0)
        return {"time_s": 2 * matmul["n"] ** 3 / matmul["flops_per_s"], "matmul": matmul, "notes": [f"n={matmul['n']}"]}

    with torch.no_grad():
        if kind.startswith("vae_"):
            if kind.endswith("_baseline"):
                install_vae_baseline()
                result["notes"].append("official-code layout")
            if config.compressor != "vidtok":
                raise RuntimeError("config has no VidTok VAE")
            vae = _build_vae(config, device, dtype)
            video = torch.rand(batch, 3, config.chunk_size, size, size, device=device, dtype=dtype) * 2 - 1
            latents = torch.randn(batch, config.vae_latent_channels, config.latent_frames_per_chunk,
                                  config.latent_size, config.latent_size, device=device, dtype=dtype)
            if kind.startswith("vae_encode"):
                fn = lambda: vae.encode(video).latent_dist.mode()
            else:
                fn = lambda: vae.decode(latents).sample
            weights = _reset_peak(device)
            times = _timed(fn, device, repeats, warmup)
            frames = config.chunk_size
        elif kind == "encoder":
            encoder = _materialize(lambda: VideoFlexTokEncoder(config), device, dtype)
            latents = torch.randn(batch, config.vae_latent_channels, config.latent_frames_per_chunk,
                                  config.latent_size, config.latent_size, device=device, dtype=dtype)
            weights = _reset_peak(device)
            times = _timed(lambda: encoder(latents), device, repeats, warmup)
            flops = transformer_flops(config, "encoder", batch, config.latent_frames_per_chunk)
            result["flops"] = flops
            frames = config.chunk_size
        elif kind == "decoder_step":
            # the decoder alone (+ the parameter-free quantizer), driven like predict_velocity does
            decoder = _materialize(lambda: VideoFlexTokDecoder(config), device, dtype)
            steps = config.latent_frames_per_chunk
            latents = torch.randn(batch, config.vae_latent_channels, steps, config.latent_size, config.latent_size,
                                  device=device, dtype=dtype)
            codes = (torch.rand(batch, steps, config.num_registers, config.fsq_dim, device=device) * 2 - 1).to(dtype)
            keep = torch.full((batch,), config.num_registers, device=device, dtype=torch.long)
            prefix = torch.zeros(batch, device=device, dtype=torch.long)
            uncond = torch.zeros(batch, device=device, dtype=torch.bool)
            timesteps = torch.full((batch,), 0.5, device=device)
            weights = _reset_peak(device)
            times = _timed(lambda: decoder(latents, timesteps, codes, keep, prefix, uncond), device, repeats, warmup)
            result["flops"] = transformer_flops(config, "decoder", batch, steps)
            frames = config.chunk_size
        elif kind in ("tokenize", "detokenize"):
            model = _build_model(config, device, dtype)
            if hasattr(model.vae, "use_slicing"):
                model.vae.use_slicing = {"auto": None, "on": True, "off": False}[job.get("vae_slicing", "auto")]
                result["notes"].append(f"VAE slicing {job.get('vae_slicing', 'auto')}")
            timer = StageTimer(device)
            timer.wrap(model.vae, "encode", "vae_encode")
            timer.wrap(model.vae, "decode", "vae_decode")
            timer.wrap(model.encoder, "forward", "encoder")
            timer.wrap(model, "predict_velocity", "decoder_step")
            videos = torch.rand(batch, 3, frames, size, size, device=device) * 2 - 1
            if kind == "tokenize":
                fn = lambda: model.encode(videos).token_ids
                first_chunk = videos[:, :, : config.chunk_size]
                warm_fn = lambda: model.encode(first_chunk).token_ids  # the per-chunk shapes, one chunk
            else:
                steps = model.num_chunks_for_frames(frames)
                token_steps = config.num_token_steps_for_chunks(steps)
                token_ids = torch.randint(0, config.codebook_size, (batch, token_steps, config.num_registers),
                                          device=device)
                num_steps = job["num_inference_steps"]
                # what `model.detokenize` builds, with the per-step progress bar switched off
                from videoflextok_hf.pipeline import (
                    VideoFlexTokFlowMatchScheduler,
                    VideoFlexTokPipeline,
                )

                pipe = VideoFlexTokPipeline(model=model, scheduler=VideoFlexTokFlowMatchScheduler())
                pipe.set_progress_bar_config(disable=True)

                def fn(num_steps=num_steps, ids=token_ids):
                    generator = torch.Generator(device="cpu").manual_seed(0)
                    return pipe(ids, num_inference_steps=num_steps, generator=generator, output_type="pt").frames

                # the per-chunk shapes (first chunk, 1 sampling step): warms up without decoding the whole video
                warm_fn = lambda: fn(1, token_ids[:, : model.tokens_per_chunk])

                result["num_inference_steps"] = num_steps
            weights = _reset_peak(device)
            timer.active = warmup == 0
            for _ in range(warmup):
                warm_fn()
            timer.active = True
            timer.reset()
            times = _timed(fn, device, repeats, 0)
            result["stages_s"] = {name: total / repeats for name, total in timer.totals.items()}
            result["stage_calls"] = {name: count // repeats for name, count in timer.calls.items()}
            if kind == "detokenize" and "decoder_step" in timer.totals:
                # every predict_velocity call ran one guided step on 2B sequences of one chunk
                per_call = transformer_flops(config, "decoder", 2 * batch, config.latent_frames_per_chunk)
                result["decoder_flops_per_s"] = per_call * timer.calls["decoder_step"] / timer.totals["decoder_step"]
        else:
            raise ValueError(f"unknown measurement {kind!r}")
        peak = _peak(device)
        if kind in ("decoder_step", "encoder"):
            matmul = measure_matmul(device, dtype)
    result.update(
        times_s=times,
        time_s=statistics.median(times),
        frames=frames,
        peak_bytes=peak,
        weights_bytes=weights,
        activation_bytes=max(peak - weights, 0),
    )
    if matmul is not None:
        result["matmul"] = matmul
        result["mfu"] = result["flops"] / result["time_s"] / matmul["flops_per_s"]
    return result


def _run_job_safely(job: dict) -> dict:
    try:
        return {"ok": True, **run_job(job)}
    except BaseException as error:  # noqa: BLE001
        return {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def run_in_child(job: dict) -> dict:
    """Run one measurement in a child process and return its JSON result.

    CPU: fork (the parent has imported everything but never ran a torch kernel, so the fork is safe and cheap, and
    the child's peak memory is its own). CUDA: a fresh interpreter (CUDA cannot be used in a forked child)."""
    if job["device"] != "cpu":
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                              capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            return {"ok": False, "error": f"worker exited {proc.returncode}: {proc.stderr[-500:]}"}
        return json.loads(lines[-1])
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        out = _run_job_safely(job)
        with os.fdopen(write_fd, "w") as handle:
            handle.write(json.dumps(out))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as handle:
        data = handle.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"ok": False, "error": f"child died (status {status}, likely out of memory)"}
    return json.loads(data)


# ----------------------------------------------------------------------------------------------------------------
# job planning and reporting


def plan_jobs(args) -> list[dict]:
    jobs = []
    base = {"device": args.device, "dtype": args.dtype, "threads": args.threads, "vae_slicing": args.vae_slicing,
            "num_inference_steps": args.num_inference_steps}
    for name in args.configs:
        slow = name == "released" and args.device == "cpu" and not args.full_released
        warmup = 0 if slow else args.warmup
        repeats = 1 if slow else args.repeats
        stage_repeats = 1 if slow else (args.stage_repeats or args.repeats)
        common = {**base, "config": name, "warmup": warmup, "repeats": repeats, "stage_repeats": stage_repeats}
        jobs.append(dict(common, kind="matmul", batch=1))
        stage_batches = [1] if slow else args.batch_sizes
        # a guided sampling step runs the decoder on 2B sequences: measure those sizes too
        decoder_batches = [1] if slow else sorted(set(args.batch_sizes) | {2 * b for b in args.batch_sizes})
        vae_kinds = ["vae_encode", "vae_decode"]
        if args.vae_baseline:
            vae_kinds += ["vae_encode_baseline", "vae_decode_baseline"]
        for kind in ["decoder_step", "encoder"] + vae_kinds:
            batches = {"decoder_step": decoder_batches, "encoder": stage_batches}.get(kind, [1])
            # the VAE may run in its own dtype (e.g. bf16 on a CPU with AMX); the baseline stays at --dtype
            dtypes = args.vae_dtypes if kind in ("vae_encode", "vae_decode") and args.vae_dtypes else [args.dtype]
            for batch in batches:
                for dtype in dtypes:
                    jobs.append(dict(common, kind=kind, batch=batch, frames=17, dtype=dtype))
        if slow:
            continue  # end-to-end runs of the released shapes are hours on a CPU
        for kind in ("tokenize", "detokenize"):
            for frames in args.frames:
                for batch in args.batch_sizes:
                    jobs.append(dict(common, kind=kind, batch=batch, frames=frames))
    if args.only:
        jobs = [job for job in jobs if job["kind"] in args.only or job["kind"] == "matmul"]
    return jobs


def _mb(value) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def row_for(job: dict, res: dict) -> dict:
    row = {k: job[k] for k in ("config", "device", "dtype", "kind", "batch")}
    if job["kind"] in ("tokenize", "detokenize"):
        row["vae_slicing"] = job.get("vae_slicing", "auto")
    row["frames"] = res.get("frames", job.get("frames"))
    row.update(res)
    if res.get("ok") and job["kind"] != "matmul":
        clips = job["batch"]  # videos (end to end) or chunks / sequences (stages)
        row["clips_per_s"] = clips / res["time_s"]
        row["frames_per_s"] = clips * row["frames"] / res["time_s"]
    return row


def format_table(rows: list[dict]) -> str:
    header = ("| config | device | dtype | measurement | B | T | steps | time (s) | clips/s | frames/s | "
              "peak mem (MiB) | above weights (MiB) | MFU | notes |")
    lines = [header, "|" + "---|" * 14]
    for row in rows:
        if not row.get("ok"):
            lines.append(f"| {row['config']} | {row['device']} | {row['dtype']} | {row['kind']} | {row['batch']} | "
                         f"{row.get('frames', '')} | | FAILED | | | | | | {row.get('error', '')[:80]} |")
            continue
        notes = list(row.get("notes", []))
        if row["kind"] == "matmul":
            notes.append(f"{row['matmul']['flops_per_s'] / 1e9:,.1f} GFLOP/s")
            lines.append(f"| {row['config']} | {row['device']} | {row['dtype']} | matmul | | | | "
                         f"{row['time_s']:.4f} | | | | | | {'; '.join(notes)} |")
            continue
        if "stages_s" in row:
            calls = row.get("stage_calls", {})
            notes.append(", ".join(f"{k} {v:.3g}s/{calls.get(k, 0)}x" for k, v in row["stages_s"].items()))
        if row["kind"] in ("decoder_step", "encoder"):
            notes.append(f"{row['flops'] / 1e9:,.1f} GFLOP, matmul {row['matmul']['flops_per_s'] / 1e9:,.1f} GFLOP/s")
        if len(row.get("times_s", [])) == 1 and row["config"] == "released":
            notes.append("single pass")
        if row["kind"] == "decoder_step" and row["batch"] == 1 and row["config"] == "released":
            notes.append("one decoder step, 1 sequence")
        if "decoder_flops_per_s" in row:
            notes.append(f"decoder {row['decoder_flops_per_s'] / 1e9:,.1f} GFLOP/s")
        mfu = f"{100 * row['mfu']:.0f}%" if "mfu" in row else ""
        lines.append(
            f"| {row['config']} | {row['device']} | {row['dtype']} | {row['kind']} | {row['batch']} | {row['frames']} | "
            f"{row.get('num_inference_steps', '')} | {row['time_s']:.3f} | {row['clips_per_s']:.3g} | "
            f"{row['frames_per_s']:.3g} | {_mb(row['peak_bytes'])} | {_mb(row['activation_bytes'])} | {mfu} | "
            f"{'; '.join(notes)} |"
        )
    return "\n".join(lines)


def summarize_targets(rows: list[dict]) -> list[str]:
    ok = [r for r in rows if r.get("ok")]

    def find(**keys):
        return [r for r in ok if all(r.get(k) == v for k, v in keys.items())]

    lines = []
    for row in find(kind="decoder_step", config="mid"):
        lines.append(f"- decoder forward MFU, mid, {row['device']} {row['dtype']}, B={row['batch']}: "
                     f"{100 * row['mfu']:.0f}% of measured matmul (target >= 50%)")
    for stage in ("encode", "decode"):
        for row in find(kind=f"vae_{stage}", config="released", batch=1):
            base = find(kind=f"vae_{stage}_baseline", config="released", batch=1, device=row["device"],
                        dtype=row["dtype"]) or find(kind=f"vae_{stage}_baseline", config="released", batch=1,
                                                    device=row["device"])
            text = f"- VAE {stage}, released VidTok, one 17x256x256 clip, {row['device']} {row['dtype']}: " \
                   f"{row['time_s']:.1f} s, peak {row['peak_bytes'] / 2**30:.2f} GiB"
            if row["device"] == "cpu":
                official_t = OFFICIAL_VAE_CPU[f"{stage}_s"]
                official_m = OFFICIAL_VAE_CPU["peak_rss_gb"] * 1e9
                text += (f"; vs official figures ({official_t} s, 8.2 GB): {official_t / row['time_s']:.2f}x faster, "
                         f"{row['peak_bytes'] / official_m:.2f}x memory (target >= 2x faster, <= 0.5x memory)")
            if base:
                b = base[0]
                text += (f"; vs official-layout baseline measured here ({b['dtype']}, {b['time_s']:.1f} s, "
                         f"{b['peak_bytes'] / 2**30:.2f} GiB): {b['time_s'] / row['time_s']:.2f}x faster, "
                         f"{row['peak_bytes'] / b['peak_bytes']:.2f}x memory "
                         f"({row['activation_bytes'] / max(b['activation_bytes'], 1):.2f}x above weights)")
            lines.append(text)
    for kind in ("tokenize", "detokenize"):
        for one in find(kind=kind, batch=1):
            four = find(kind=kind, batch=4, config=one["config"], device=one["device"], dtype=one["dtype"],
                        frames=one["frames"], vae_slicing=one.get("vae_slicing"))
            if four:
                ratio = four[0]["clips_per_s"] / one["clips_per_s"]
                lines.append(f"- {kind} {one['config']} {one['device']} T={one['frames']} "
                             f"(VAE slicing {one.get('vae_slicing', 'auto')}): per-clip throughput "
                             f"B=4 / B=1 = {ratio:.2f} (target >= 1 on CPU)")
    for short in find(kind="detokenize", frames=17):
        long = find(kind="detokenize", frames=81, config=short["config"], device=short["device"],
                    dtype=short["dtype"], batch=short["batch"])
        if long:
            lg = long[0]
            lines.append(
                f"- detokenize {short['config']} {short['device']} B={short['batch']}: 81 vs 17 frames peak memory "
                f"{lg['peak_bytes'] / short['peak_bytes']:.2f}x (above weights "
                f"{lg['activation_bytes'] / max(short['activation_bytes'], 1):.2f}x; target <= 1.2x), time "
                f"{lg['time_s'] / short['time_s']:.2f}x for 5x the chunks (linear = 5.0)")
    return lines


def machine_info(device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["mem_total_gb"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    csv = lambda text: [s for s in text.split(",") if s]
    ints = lambda text: [int(s) for s in csv(text)]
    parser.add_argument("--configs", type=csv, default=["tiny", "mid", "released"], help="tiny,mid,released")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--batch-sizes", type=ints, default=[1, 4])
    parser.add_argument("--frames", type=ints, default=[17, 33, 81])
    parser.add_argument("--num-inference-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage-repeats", type=int, default=None,
                        help="repeats of the per-stage measurements (default: --repeats)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls first (end-to-end runs warm up on the first chunk, detokenize with 1 step)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--only", type=csv, default=None,
                        help="restrict to these measurements (e.g. decoder_step,vae_encode)")
    parser.add_argument("--vae-slicing", choices=["auto", "on", "off"], default="auto",
                        help="VidTok slicing in tokenize/detokenize (auto: one chunk at a time on CPU, batched on CUDA)")
    parser.add_argument("--vae-dtypes", type=csv, default=None,
                        help="run the VAE stage measurements in these dtypes (default: --dtype), e.g. float32,bfloat16; "
                             "the official-layout baseline stays at --dtype")
    parser.add_argument("--no-vae-baseline", dest="vae_baseline", action="store_false",
                        help="skip the official-layout VAE baseline")
    parser.add_argument("--full-released", action="store_true",
                        help="also run batch 4 and end-to-end tokenize/detokenize for the released shapes on CPU")
    parser.add_argument("--json", default=None, help="write all measurements to this file")
    parser.add_argument("--report", nargs="+", default=None, metavar="JSON",
                        help="only re-print the table and targets of earlier --json files (merged)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny config only, T=17,33, 2 sampling steps, 1 repeat (a ~1 minute CPU smoke run)")
    args = parser.parse_args(argv)
    if args.vae_dtypes and set(args.vae_dtypes) - set(DTYPES):
        parser.error(f"unknown --vae-dtypes {sorted(set(args.vae_dtypes) - set(DTYPES))}; choose from {sorted(DTYPES)}")
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose from {sorted(CONFIGS)}")
    if args.quick:
        args.configs, args.frames, args.num_inference_steps, args.repeats = ["tiny"], [17, 33], 2, 1
        args.stage_repeats = 3
    return args


def report(paths: list[str]) -> int:
    rows = []
    for path in paths:
        with open(path) as handle:
            payload = json.load(handle)
        print(f"<!-- {path}: {payload['date_utc']}, {payload['machine']} -->")
        rows.extend(payload["results"])
    print(format_table(rows))
    print("\nTargets (measured ratios, not assertions):")
    print("\n".join(summarize_targets(rows)))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # one measurement in a fresh interpreter (CUDA)
        print(json.dumps(_run_job_safely(json.loads(argv[1]))))
        return 0
    args = parse_args(argv)
    if args.report:
        return report(args.report)
    jobs = plan_jobs(args)
    info = machine_info(args.device)
    print(f"# VideoFlexTok benchmarks: {info}", flush=True)
    rows = []
    start = time.time()
    for i, job in enumerate(jobs):
        res = run_in_child(job)
        row = row_for(job, res)
        rows.append(row)
        status = f"{res['time_s']:.3f}s" if res.get("ok") else "FAILED " + res.get("error", "")
        print(f"[{i + 1}/{len(jobs)} {time.time() - start:6.1f}s] {job['config']} {job['kind']} B={job['batch']} "
              f"T={row.get('frames')}: {status}", flush=True)
    table = format_table(rows)
    targets = summarize_targets(rows)
    print()
    print(table)
    if targets:
        print("\nTargets (measured ratios, not assertions):")
        print("\n".join(targets))
    if args.json:
        payload = {"machine": info, "args": vars(args), "results": rows, "targets": targets,
                   "wall_s": time.time() - start, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
        print(f"\nwrote {args.json}")
    return 0 if all(row.get("ok") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
