"""Decoding: the flow-matching scheduler, CFG/APG guidance and `VideoFlexTokPipeline`."""

from .guidance import AdaptiveProjectedGuidance, classifier_free_guidance, project, resolve_guidance_scale
from .pipeline_videoflextok import VideoFlexTokPipeline, VideoFlexTokPipelineOutput
from .scheduling_flow_match import FlowMatchSchedulerOutput, VideoFlexTokFlowMatchScheduler

__all__ = [
    "AdaptiveProjectedGuidance",
    "FlowMatchSchedulerOutput",
    "VideoFlexTokFlowMatchScheduler",
    "VideoFlexTokPipeline",
    "VideoFlexTokPipelineOutput",
    "classifier_free_guidance",
    "project",
    "resolve_guidance_scale",
]
