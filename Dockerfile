# threadbox: `docker build -t threadbox .` then run with the settings of .env.example.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md manifest.yml ./
COPY bot ./bot
COPY storage ./storage
# manifest.yml is installed too: the bot reads its bot scopes from it.
RUN pip install . && useradd --create-home --uid 10001 threadbox
USER threadbox
WORKDIR /home/threadbox
# HTTP mode listens here (Socket Mode needs no port).
ENV PORT=3000
EXPOSE 3000
CMD ["python", "-m", "bot"]
