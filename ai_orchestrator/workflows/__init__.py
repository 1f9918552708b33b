"""Workflows: one per task, and batch delivery's collector and provider batches."""

from ._collector import BatchCollectorWorkflow
from ._provider_batch import ProviderBatchWorkflow
from ._task import TaskWorkflow

__all__ = ["BatchCollectorWorkflow", "ProviderBatchWorkflow", "TaskWorkflow"]
