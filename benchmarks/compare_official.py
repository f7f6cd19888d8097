#!/usr/bin/env python
"""This package against the OFFICIAL VideoFlexTok code, side by side in one invocation (CPU, fp32).

A benchmark script, not a test. It drives the shared harness of the official side (`perf_compare.py` and
`bench_official.py` in `--harness`, default `../shared/tools/official-baseline`, set up as its README says) and
measures:

    mid B=4, mid B=1   `perf_compare.py --batch N`: the official `tokenize` / `detokenize` (8 steps, APG 3.0, its
                       `flex_attention` under `torch.compile`) and ours on the same converted weights and inputs,
                       every (side, op) in a fresh process; ratios = official time / ours, ours / official memory
    vae                the real-width VidTok VAE (base width 128, random weights), one 17 x 128 x 128 clip, encode
                       and decode, official (`bench_official.py` worker) and ours, each in a fresh process, one
                       call, peak-RSS delta, alternating for --vae-rounds rounds (medians); ours also once at 81
                       frames (memory flat in the clip length); `--vae-dtype bfloat16` runs our side in bf16
    tok4rounds         tokenize only at B=4, official and ours alternating in fresh processes for --rounds rounds
                       (5 calls each): the steadier tokenize figure on a VM whose speed drifts
    compile            ours only: decoder step (B=8 = one guided step at B=4) and encoder (B=4) on the mid shape,
                       eager vs `model.compile_blocks()`, with the first compiled call (the compile time)

usage (from the project root):
    REF_PY=/path/to/official/venv/bin/python REF_CODE=/path/to/official/code \\
        .venv/bin/python benchmarks/compare_official.py [--parts mid4,mid1,vae,compile] [--max-wait 60] [--json out.json]

Every worker waits (up to --max-wait s) for an idle machine and reports the CPU other processes used meanwhile;
on a shared machine only the ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HARNESS = ROOT.parent / "shared" / "tools" / "official-baseline"
FRAMES, SIZE = 17, 128


def _load_harness(harness: Path):
    spec = importlib.util.spec_from_file_location("perf_compare", harness / "perf_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------
# our VAE worker (same methodology as bench_official.py's job_vae: fresh process, random init, one call)


def _vae_worker(op: str, frames: int, threads: int, dtype_name: str = "float32") -> None:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from videoflextok_hf.modeling.vidtok import VidTokVAE

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    vae = VidTokVAE().eval().requires_grad_(False).to(dtype)  # the released geometry: base width 128
    generator = torch.Generator().manual_seed(0)
    if op == "encode":
        x = (torch.rand(1, 3, frames, SIZE, SIZE, generator=generator) * 2 - 1).to(dtype)

        def fn():
            return vae.encode(x).latent_dist.mean
    else:
        z = torch.randn(1, 16, (frames - 1) // 4 + 1, SIZE // 8, SIZE // 8, generator=generator).to(dtype)

        def fn():
            return vae.decode(z).sample
    harness = _load_harness(Path(os.environ["HARNESS"]))
    # one call, as the official worker does (warm-up 0, reps 1), with the harness's peak-RSS counters
    with torch.no_grad():
        gc.collect()
        before = harness._status_kb("VmRSS") / 1024
        harness._reset_peak()
        start_cpu = harness.cpu_snapshot()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    print("RESULT " + json.dumps(dict(median_s=seconds, peak_delta_mib=harness._peak_mib() - before,
                                      foreign_cpu_frac=harness.foreign_frac(start_cpu, harness.cpu_snapshot()))),
          flush=True)


def _compile_worker(threads: int) -> None:
    """Ours only: eager vs `compile_blocks()` on the mid shape (random weights), compile time reported."""
    import statistics

    import torch

    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
    import run_benchmarks as rb

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    rb.CONFIGS["mid"].update(num_registers=256, vae_base_channels=4)  # perf_compare's mid shape
    config = rb.build_config("mid")
    model = rb._build_model(config, "cpu", torch.float32)
    latents = torch.randn(8, config.vae_latent_channels, 5, 16, 16)  # one guided step at B=4
    ids = torch.randint(0, model.quantizer.codebook_size, (8, 5, config.num_registers))
    vae_latents = torch.randn(4, config.vae_latent_channels, 5, 16, 16)
    calls = dict(decoder_step_8=lambda: model.predict_velocity(latents, 0.5, ids),
                 encoder_4=lambda: model.quantizer(model.encoder(vae_latents)))

    def timed(fn, reps=3):
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    result = {}
    for name, fn in calls.items():
        fn()
        result[f"{name}_eager_s"] = timed(fn)
    start = time.perf_counter()
    model.compile_blocks()
    for name, fn in calls.items():
        start = time.perf_counter()
        fn()
        result[f"{name}_first_compiled_call_s"] = time.perf_counter() - start
        result[f"{name}_compiled_s"] = timed(fn)
        result[f"{name}_speedup"] = result[f"{name}_eager_s"] / result[f"{name}_compiled_s"]
    print("RESULT " + json.dumps(result), flush=True)


def _run(cmd: list[str], env: dict, timeout: float) -> dict:
    try:
        process = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timeout after {timeout:.0f} s")
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        return dict(error=f"rc={process.returncode}: " + " | ".join((process.stderr or process.stdout).splitlines()[-4:]))
    return json.loads(lines[-1][len("RESULT "):])


def compare_vae(args, harness, env_official: dict, env_ours: dict) -> list[dict]:
    """Per op: `--vae-rounds` rounds of (official, ours) on 17 frames, alternating, one call each in a fresh process
    (figures: the medians over the rounds), then ours once on 81 frames (memory flat in the clip length)."""
    import statistics

    rows = []
    for op in ("encode", "decode"):
        official_runs, our_runs = [], []
        for _ in range(args.vae_rounds):
            harness.wait_for_idle(max_wait=args.max_wait)
            spec = dict(job="vae", op=op, reps=1, warmup=0, threads=args.threads)
            official_runs.append(_run([env_official["REF_PY"], str(Path(args.harness) / "bench_official.py"),
                                       "--worker", json.dumps(spec)], env_official, 3600))
            harness.wait_for_idle(max_wait=args.max_wait)
            our_runs.append(_run([sys.executable, __file__, "--vae-worker", op, str(FRAMES), "--threads",
                                  str(args.threads), "--vae-dtype", args.vae_dtype], env_ours, 3600))
        harness.wait_for_idle(max_wait=args.max_wait)
        ours_81 = _run([sys.executable, __file__, "--vae-worker", op, "81", "--threads", str(args.threads),
                        "--vae-dtype", args.vae_dtype],
                       env_ours, 3600)
        row = dict(op=op, our_dtype=args.vae_dtype, official_rounds=official_runs, ours_rounds=our_runs, ours_81=ours_81)
        good = [(o, u) for o, u in zip(official_runs, our_runs) if "error" not in o and "error" not in u]
        if good:
            for side, runs in (("official", [o for o, _ in good]), ("ours", [u for _, u in good])):
                row[side] = {key: statistics.median(r[key] for r in runs) for key in ("median_s", "peak_delta_mib")}
            row["speedup"] = row["official"]["median_s"] / row["ours"]["median_s"]
            row["speedup_per_round"] = [o["median_s"] / u["median_s"] for o, u in good]
            row["memory_ratio"] = row["ours"]["peak_delta_mib"] / row["official"]["peak_delta_mib"]
            if "error" not in ours_81:
                row["memory_81_over_17"] = ours_81["peak_delta_mib"] / row["ours"]["peak_delta_mib"]
        print(f"vae {op}: official {[r.get('median_s') for r in official_runs]} s, ours "
              f"{[r.get('median_s') for r in our_runs]} s, peak deltas official "
              f"{[r.get('peak_delta_mib') for r in official_runs]} / ours {[r.get('peak_delta_mib') for r in our_runs]}"
              f" MiB; 81 frames {ours_81}; speedup x{row.get('speedup', float('nan')):.2f} (rounds "
              f"{[round(x, 2) for x in row.get('speedup_per_round', [])]}), memory "
              f"x{row.get('memory_ratio', float('nan')):.2f}, 81/17 memory x{row.get('memory_81_over_17', float('nan')):.2f}",
              flush=True)
        rows.append(row)
    return rows


def _perf_compare(args, env: dict, *argv: str) -> subprocess.CompletedProcess:
    """perf_compare.py in a child (its workers are children of it), with our --threads and --max-wait for idle CPUs."""
    argv = ["perf_compare.py", *argv, "--threads", str(args.threads)]
    code = (f"import functools, sys; sys.argv = {argv!r}; sys.path.insert(0, {str(args.harness)!r}); "
            f"import perf_compare as pc; pc.wait_for_idle = functools.partial(pc.wait_for_idle, "
            f"max_wait={args.max_wait}); sys.exit(pc.main())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)


def compare_mid(args, batch: int, env: dict) -> dict:
    """perf_compare.py's whole mid comparison at `batch`: its log and the ratios of its last line."""
    process = _perf_compare(args, env, "--batch", str(batch))
    output = process.stdout + process.stderr
    print(output, flush=True)
    line = [x for x in output.splitlines() if x.startswith("perf ours/official:")]
    match = re.search(r"tokenize x([\d.]+), detokenize x([\d.]+), peak mem x([\d.]+)", line[-1] if line else "")
    result = dict(batch=batch, log_tail=output.splitlines()[-14:])
    if match:
        result.update(tokenize=float(match[1]), detokenize=float(match[2]), memory=float(match[3]))
    return result


def compare_tokenize_rounds(args, harness, batch: int, rounds: int, env_official: dict, env_ours: dict) -> dict:
    """Tokenize only, the official and our worker of `perf_compare.py` alternating in fresh processes for `rounds`
    rounds (median of 5 calls each). On a VM whose speed drifts by 10-30 % from one minute to the next, one
    official-then-ours pair can land on either side of a drift; alternating several times puts both sides under the
    same drift, and the ratio of the medians over all rounds is the figure."""
    import statistics
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="tokenize_rounds_"))
    # build the official checkpoint, convert it and make the inputs once (perf_compare with a 1-step detokenize)
    _perf_compare(args, env_ours, "--batch", str(batch), "--steps", "1", "--keep", str(work))
    if not (work / "hf").is_dir():
        return dict(error=f"perf_compare did not build the mid checkpoint in {work}")
    script = str(Path(args.harness) / "perf_compare.py")
    sides = dict(official=(env_official["REF_PY"], "official-time", env_official),
                 ours=(sys.executable, "ours-time", env_ours))
    result = dict(batch=batch, rounds=[])
    for round_index in range(rounds):
        row = {}
        for side, (python, worker, env) in sides.items():
            harness.wait_for_idle(max_wait=args.max_wait)
            row[side] = _run([python, script, "--worker", worker, "--work", str(work), "--op", "tokenize", "--reps",
                              "5", "--threads", str(args.threads)], env, 1800)
        if all("error" not in row[side] for side in sides):
            row["speedup"] = row["official"]["median_s"] / row["ours"]["median_s"]
        print(f"tokenize B={batch} round {round_index + 1}: official {row['official'].get('median_s')} s, ours "
              f"{row['ours'].get('median_s')} s, speedup x{row.get('speedup', float('nan')):.2f}", flush=True)
        result["rounds"].append(row)
    times = {side: [t for row in result["rounds"] if "error" not in row[side] for t in row[side]["times_s"]]
             for side in sides}
    if all(times.values()):
        result.update({f"{side}_median_s": statistics.median(values) for side, values in times.items()})
        result["speedup"] = result["official_median_s"] / result["ours_median_s"]
        result["memory"] = (statistics.median(r["ours"]["delta_mib"] for r in result["rounds"] if "error" not in r["ours"])
                            / statistics.median(r["official"]["delta_mib"] for r in result["rounds"]
                                                if "error" not in r["official"]))
        print(f"tokenize B={batch} over {rounds} rounds: official {result['official_median_s']:.2f} s, ours "
              f"{result['ours_median_s']:.2f} s (medians of all calls), speedup x{result['speedup']:.2f}, "
              f"memory x{result['memory']:.2f}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="mid4,mid1,vae,compile",
                        help="comma list of mid4, mid1, vae, compile, tok4rounds")
    parser.add_argument("--rounds", type=int, default=4, help="tok4rounds: alternating official / ours rounds")
    parser.add_argument("--vae-rounds", type=int, default=1, help="vae: alternating official / ours rounds")
    parser.add_argument("--harness", default=str(DEFAULT_HARNESS), help="folder of perf_compare.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-wait", type=int, default=60, help="seconds to wait for an idle CPU per worker")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--vae-dtype", default="float32", choices=("float32", "bfloat16"),
                        help="vae: our side's dtype (the official side always runs its float32); bfloat16 only "
                             "pays on CPUs with bf16 units (benchmarks/README.md)")
    parser.add_argument("--vae-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--compile-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_worker:
        _compile_worker(args.threads)
        return 0
    if args.vae_worker:
        _vae_worker(args.vae_worker[0], int(args.vae_worker[1]), args.threads, args.vae_dtype)
        return 0
    ref_py, ref_code = os.environ.get("REF_PY"), os.environ.get("REF_CODE")
    if not ref_py or not ref_code:
        parser.error("set REF_PY (python of the official venv) and REF_CODE (folder holding the official "
                     "`videoflextok` package); see the README beside perf_compare.py")
    harness_dir = Path(args.harness)
    if not (harness_dir / "perf_compare.py").is_file():
        parser.error(f"--harness {harness_dir}: no perf_compare.py there")
    harness = _load_harness(harness_dir)
    threads = str(args.threads)
    env_ours = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, HARNESS=str(harness_dir),
                    PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    env_official = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env_official.update(REF_CODE=str(Path(ref_code).resolve()), OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    results = dict(machine=_machine(), started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    for part in parts:
        if part in ("mid4", "mid1"):
            results[part] = compare_mid(args, int(part[3:]), env_ours)
        elif part == "tok4rounds":
            results[part] = compare_tokenize_rounds(args, harness, 4, args.rounds, env_official, env_ours)
        elif part == "vae":
            results["vae"] = compare_vae(args, harness, env_official, env_ours)
        elif part == "compile":
            harness.wait_for_idle(max_wait=args.max_wait)
            results["compile"] = _run([sys.executable, __file__, "--compile-worker", "--threads", threads], env_ours, 3600)
            print(f"compile_blocks (ours only, mid shape): {results['compile']}", flush=True)
        else:
            parser.error(f"unknown part {part!r}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1, default=str)[:4000])
    return 0


def _machine() -> dict:
    flags, model = set(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)[1]
        flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M)[1].split())
    except (OSError, TypeError):
        pass
    import torch

    return dict(cpu=model, cores=os.cpu_count(), torch=torch.__version__,
                flags=sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}))


if __name__ == "__main__":
    sys.exit(main())
