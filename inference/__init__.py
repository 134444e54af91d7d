"""Inference: the memory window and schedule, VideoSegmenter, result writers, the benchmarks."""
from inference.segmenter import SegmentedFrame, VideoSegmenter

__all__ = ["SegmentedFrame", "VideoSegmenter"]
