"""Append-only audit log of the publish protocol (docs/architecture.md, "Publish protocol",
step 6), one JSON object per line."""

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Step = Literal["stage", "upload", "verify", "delete", "skip"]
Outcome = Literal["ok", "failed"]


class Journal:
    """Thread-safe JSONL journal: ``{time, run_id, key, bytes, sha256, step, outcome, detail}``.

    Each line is written and flushed under a lock, so a crash loses at most the line being
    written and concurrent publishers never interleave bytes.
    """

    def __init__(self, path: Path, run_id: str = "") -> None:
        self.path = path
        self.run_id = run_id
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __reduce__(self) -> tuple[type["Journal"], tuple[Path, str]]:
        """Picklable for worker processes: each appends whole lines to the same file."""
        return (Journal, (self.path, self.run_id))

    def record(
        self,
        *,
        key: str,
        step: Step,
        outcome: Outcome,
        size: int | None = None,
        sha256: str | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        """Append one entry and return it."""
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "run_id": self.run_id,
            "key": key,
            "bytes": size,
            "sha256": sha256,
            "step": step,
            "outcome": outcome,
            "detail": detail,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry written so far (all runs sharing the file)."""
        with self._lock:
            if not self.path.exists():
                return []
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
