"""The data converter shared by clients and workers.

Both ends must agree on it: pydantic models travel as JSON, so a run's inputs
and results are readable in the Web UI.
"""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter


def data_converter() -> DataConverter:
    return pydantic_data_converter
