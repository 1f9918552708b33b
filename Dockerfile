# The worker image: `docker compose up --scale worker=N` runs N of these.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ai_orchestrator ./ai_orchestrator
COPY worker.py ./
RUN pip install --no-cache-dir ".[all]"
# No secret is baked in: OPENAI_API_KEY comes from the environment at run time.
ENTRYPOINT ["ai-orchestrator"]
CMD ["worker"]
