"""Run by tests/test_training_distributed.py under torchrun: train a config, save this rank's final weights.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_training_worker.py \
        CONFIG.json OUT_DIR [--resume] [--die-at-step K]

Writes OUT_DIR/rank<R>.safetensors (the trained model's state dict). `--die-at-step K`: rank 0 kills itself with
SIGKILL when step K starts (after the checkpoints before it): a crash mid-run, not a clean stop.
Only uses `Trainer(TrainingConfig.from_file(path)).train()`, the public entry point, so it runs on any version.
"""

import os
import signal
import sys
from pathlib import Path

from safetensors.torch import save_file

from videoflextok_hf.training import Trainer, TrainingConfig


def main() -> None:
    config_path, out_dir = sys.argv[1], Path(sys.argv[2])
    resume = "--resume" in sys.argv
    die_at = int(sys.argv[sys.argv.index("--die-at-step") + 1]) if "--die-at-step" in sys.argv else None
    trainer = Trainer(TrainingConfig.from_file(config_path))
    if die_at is not None:
        train_step = trainer.train_step

        def dying_step(*args, **kwargs):
            if trainer.step == die_at and trainer.accelerator.process_index == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return train_step(*args, **kwargs)

        trainer.train_step = dying_step
    model = trainer.train(resume=resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out_dir / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
