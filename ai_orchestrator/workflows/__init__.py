"""Workflows: deterministic orchestration of one task each."""

from ._task import TaskWorkflow

__all__ = ["TaskWorkflow"]
