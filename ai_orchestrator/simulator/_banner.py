"""Warning shown by the CLI so simulated answers are never mistaken for a model."""

from __future__ import annotations

SIMULATOR_BANNER = """\
############################################################################
#  SIMULATOR: answers come from ai-orchestrator's built-in simulator of the
#  OpenAI, Anthropic and Gemini APIs, NOT from a model. Every reply is
#  deterministic placeholder text starting with "[simulated]". Set
#  OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY to use a real model.
############################################################################"""
