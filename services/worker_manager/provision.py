"""Simulated model downloads into the cache: deterministic content, sha256 verification, retries, one download per model."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Callable

from .metrics import HiveMetrics

log = logging.getLogger("worker-manager")

CHUNK_BYTES = 256 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def model_block(model: str) -> bytes:
    """Return the 64 KiB block whose repetition is the model's content."""
    return hashlib.sha256(model.encode()).digest() * 2048


def model_chunks(model: str, size: int, chunk: int = CHUNK_BYTES):
    """Yield the model's deterministic content in chunks."""
    block = model_block(model)
    offset = 0
    while offset < size:
        n = min(chunk, size - offset)
        start = offset % len(block)
        data = (block[start:] + block * (n // len(block) + 2))[:n]
        yield data
        offset += n


def expected_sha256(model: str, size: int) -> str:
    """Return the sha256 a correct download of (model, size) has."""
    digest = hashlib.sha256()
    for data in model_chunks(model, size):
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file on disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for data in iter(lambda: fh.read(1 << 20), b""):
            digest.update(data)
    return digest.hexdigest()


ProgressFn = Callable[[dict], None]


class Provisioner:
    """Fetch models into the cache dir; concurrent requests for one model share a single task."""

    def __init__(self, cache_dir: str, bytes_per_s: int, default_size: int, metrics: HiveMetrics,
                 on_progress: ProgressFn, on_ready: Callable[[str], None], attempts: int = 3):
        self.cache = Path(cache_dir)
        self.bytes_per_s = bytes_per_s
        self.default_size = default_size
        self.metrics = metrics
        self.on_progress = on_progress
        self.on_ready = on_ready
        self.attempts = attempts
        self.tasks: dict[str, asyncio.Task] = {}
        self.corrupt: dict[str, int] = {}
        self.downloads_started = 0
        self.status: dict[str, dict] = {}

    def paths(self, model: str) -> tuple[Path, Path]:
        """Return (data file, verified-manifest file) for a model."""
        name = _UNSAFE.sub("_", model)
        return self.cache / f"{name}.bin", self.cache / f"{name}.json"

    def cached(self, model: str) -> dict | None:
        """Return the manifest of a verified cached model, or None."""
        data, manifest = self.paths(model)
        try:
            info = json.loads(manifest.read_text())
            if info.get("model") == model and data.stat().st_size == info.get("size"):
                return info
        except (OSError, ValueError, AttributeError):
            return None
        return None

    def cached_models(self) -> list[str]:
        """Return the names of every verified model in the cache."""
        models = []
        try:
            for manifest in sorted(self.cache.glob("*.json")):
                try:
                    model = json.loads(manifest.read_text()).get("model")
                except (OSError, ValueError, AttributeError):
                    continue
                if isinstance(model, str) and self.cached(model):
                    models.append(model)
        except OSError:
            pass
        return models

    def request(self, model: str, size: int | None = None) -> asyncio.Task:
        """Provision a model: join the running download, answer at once from the cache, or start one."""
        task = self.tasks.get(model)
        if task is not None and not task.done():
            self.metrics.downloads.labels("shared").inc()
            return task
        task = self.tasks[model] = asyncio.ensure_future(self.provision(model, size or self.default_size))
        return task

    def report(self, model: str, state: str, done: int, total: int, attempt: int, message: str = "") -> None:
        """Record and publish one PROGRESS update."""
        body = {"model": model, "state": state, "bytes": done, "total": total, "attempt": attempt}
        if message:
            body["message"] = message
        self.status[model] = body
        self.on_progress(body)

    async def provision(self, model: str, size: int) -> bool:
        """Download, verify and retry; return True when the model is ready."""
        info = self.cached(model)
        if info is not None:
            self.metrics.downloads.labels("cached").inc()
            self.report(model, "ready", info["size"], info["size"], 0)
            self.on_ready(model)
            return True
        expected = await asyncio.to_thread(expected_sha256, model, size)   # O(size): off the loop
        for attempt in range(1, self.attempts + 1):
            self.downloads_started += 1
            self.metrics.downloads.labels("started").inc()
            try:
                digest = await self.download(model, size, attempt)
            except OSError as exc:
                self.metrics.downloads.labels("failed").inc()
                log.error("download failed", extra={"event": "download_failed", "model": model, "error": str(exc)})
                self.report(model, "failed", 0, size, attempt, f"cache write failed: {exc}")
                return False
            if digest == expected:
                data, manifest = self.paths(model)
                os.replace(data.with_suffix(".part"), data)
                manifest.write_text(json.dumps({"model": model, "size": size, "sha256": digest}))
                self.metrics.downloads.labels("completed").inc()
                log.info("model ready", extra={"event": "model_ready", "model": model, "attempt": attempt})
                self.report(model, "ready", size, size, attempt)
                self.on_ready(model)
                return True
            self.metrics.downloads.labels("corrupt").inc()
            log.warning("checksum mismatch", extra={"event": "download_corrupt", "model": model, "attempt": attempt})
            if attempt < self.attempts:
                self.report(model, "retry", 0, size, attempt, f"checksum mismatch: got {digest[:12]}, "
                                                              f"want {expected[:12]}")
        self.metrics.downloads.labels("failed").inc()
        self.report(model, "failed", 0, size, self.attempts, f"checksum mismatch after {self.attempts} attempts")
        return False

    async def download(self, model: str, size: int, attempt: int) -> str:
        """Write the model into <name>.part at the configured speed, then return its sha256 from disk."""
        self.cache.mkdir(parents=True, exist_ok=True)
        part = self.paths(model)[0].with_suffix(".part")
        corrupt = self.corrupt.get(model, 0) > 0
        if corrupt:
            self.corrupt[model] -= 1
        self.report(model, "downloading", 0, size, attempt)
        done, step = 0, 1
        with open(part, "wb") as fh:
            for index, data in enumerate(model_chunks(model, size)):
                if corrupt and index == 0:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                fh.write(data)
                done += len(data)
                self.metrics.bytes_downloaded.inc(len(data))
                await asyncio.sleep(len(data) / self.bytes_per_s)
                if done * 10 >= step * size and done < size:
                    step = done * 10 // size + 1
                    self.report(model, "downloading", done, size, attempt)
        self.report(model, "verifying", done, size, attempt)
        return await asyncio.to_thread(file_sha256, part)
