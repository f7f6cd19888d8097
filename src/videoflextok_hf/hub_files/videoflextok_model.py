"""The `model` component of a VideoFlexTok release loaded with `DiffusionPipeline.from_pretrained(repo,
trust_remote_code=True)`: the model stored at the repository root (the transformers layout that `AutoModel` loads).

Release-only file: `videoflextok_hf.hub.save_release` writes it to `model/` next to copies of the modeling files.
diffusers finds a custom component's code in the component's folder and loads its weights from there too; this
class redirects the loading to the root, so a release holds its weights once. Every modeling module is imported here
directly because diffusers copies only the direct relative imports of a local module.
"""

import os

from .chunking import ChunkGeometry  # noqa: F401
from .configuration_videoflextok import VideoFlexTokConfig  # noqa: F401
from .fsq import FiniteScalarQuantizer  # noqa: F401
from .modeling_videoflextok import VideoFlexTokModel
from .patchify import DCTCompressor  # noqa: F401
from .transformer import TransformerBlock  # noqa: F401
from .vidtok import VidTokVAE  # noqa: F401


class VideoFlexTokReleaseModel(VideoFlexTokModel):
    @classmethod
    def from_pretrained(cls, component_folder, *args, **kwargs) -> VideoFlexTokModel:
        """Load the `VideoFlexTokModel` of the release whose `model/` folder is `component_folder`."""
        root = os.path.dirname(os.path.abspath(component_folder))
        return VideoFlexTokModel.from_pretrained(root, *args, **kwargs)
