"""Run by test subprocesses: tokenize saved clips with a saved model into a folder.

usage: python tokenize_worker.py INPUTS OUTPUT [--process INDEX COUNT] [--slow]
INPUTS holds `model/` (save_pretrained) and `clips/` (Dataset.save_to_disk). --slow sleeps after every shard so
that a test can kill the process midway.
"""

import argparse
import time

import datasets

from videoflextok_hf import VideoFlexTokModel
from videoflextok_hf.data import datasets as token_datasets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs")
    parser.add_argument("output")
    parser.add_argument("--process", nargs=2, type=int)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    if args.slow:
        write = token_datasets._write_shard

        def slow_write(*a, **k):
            write(*a, **k)
            time.sleep(0.5)

        token_datasets._write_shard = slow_write
    model = VideoFlexTokModel.from_pretrained(f"{args.inputs}/model").eval()
    clips = datasets.load_from_disk(f"{args.inputs}/clips")
    index, count = args.process if args.process else (None, None)
    token_datasets.tokenize_dataset(clips, model, args.output, shard_size=4, batch_size=2,
                                    process_index=index, num_processes=count, progress=False)


if __name__ == "__main__":
    main()
