import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOFLEXTOK_SHARED", REPO_ROOT.parent / "shared"))
REFERENCE_TINY = SHARED / "fixtures" / "reference_tiny"
RELEASED_INFERRED = SHARED / "fixtures" / "reference_released_inferred"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def reference_io():
    """Golden tensors produced by the official code on the tiny official checkpoint."""
    return load_file(str(REFERENCE_TINY / "io.safetensors"))


@pytest.fixture(scope="session")
def official_state_dict():
    return load_file(str(REFERENCE_TINY / "official" / "model.safetensors"))


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield
