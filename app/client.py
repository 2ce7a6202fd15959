"""A small HTTP client of the Jumpboard REST API, used by `jumpboard submit`, `status`, `jobs`.

Every failure (connection refused, timeout, an HTTP error answer) becomes a `ClientError`
whose message is one line a person can act on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from app.urls import API_PREFIX

DEFAULT_SERVER = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def quiet_http_logs() -> None:
    """Keep httpx's per-request INFO lines out of CLI output (errors are reported as one line)."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class ClientError(Exception):
    """A request to the server failed; the message is one line, `status` the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error_message(response: httpx.Response) -> str:
    """One line describing an error answer, from FastAPI's `detail` where there is one."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return f"HTTP {response.status_code}: {text[0][:200] if text else response.reason_phrase}"
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    return f"HTTP {response.status_code}: {detail}"


UPLOAD_TIMEOUT_S = 600.0
"""How long an upload may take between two bytes (the server checks the whole file before it
answers)."""


class JumpboardClient:
    """Talks to one Jumpboard server; use as a context manager or call `close()`."""

    def __init__(
        self, server: str = DEFAULT_SERVER, token: str | None = None, timeout: float = 30.0
    ):
        quiet_http_logs()
        self.server = server.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.server + API_PREFIX, headers=headers, timeout=timeout
        )

    def __enter__(self) -> JumpboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot connect to {self.server} (is `jumpboard serve` running?)"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"{self.server} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"request to {self.server} failed: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_error_message(response), response.status_code)
        return response

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"{self.server} answered something that is not JSON") from None

    def submit(self, spec: dict[str, Any], priority: int | None = None) -> dict[str, Any]:
        """Submit a spec; returns the created job."""
        body = dict(spec)
        if priority is not None:
            body["priority"] = priority
        job: dict[str, Any] = self._request(
            "POST", "/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        return job

    def upload_dataset(self, path: Path) -> dict[str, Any]:
        """Upload a data set file (streamed from disk); returns the stored data set."""
        with path.open("rb") as handle:
            dataset: dict[str, Any] = self._request(
                "POST", "/datasets", files={"file": (path.name, handle)}, timeout=UPLOAD_TIMEOUT_S
            )
        return dataset

    def datasets(self, limit: int = 200) -> list[dict[str, Any]]:
        """Uploaded data sets, newest first (at most `limit`)."""
        page: dict[str, Any] = self._request("GET", "/datasets", params={"limit": limit})
        items: list[dict[str, Any]] = page["items"]
        return items

    def dataset(self, ref: str) -> dict[str, Any]:
        """One data set by id or sha256."""
        dataset: dict[str, Any] = self._request("GET", f"/datasets/{quote(ref, safe='')}")
        return dataset

    def delete_dataset(self, ref: str) -> dict[str, Any]:
        """Delete a data set; returns what was deleted."""
        dataset: dict[str, Any] = self._request("DELETE", f"/datasets/{quote(ref, safe='')}")
        return dataset

    def job(self, job_id: int) -> dict[str, Any]:
        """The job with id `job_id`."""
        job: dict[str, Any] = self._request("GET", f"/jobs/{job_id}")
        return job

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Ask the server to cancel a job; returns the job."""
        job: dict[str, Any] = self._request("POST", f"/jobs/{job_id}/cancel")
        return job

    def insertions(self, job_id: int) -> list[dict[str, Any]]:
        """The insertion records of a job."""
        items: list[dict[str, Any]] = self._request("GET", f"/jobs/{job_id}/insertions")["items"]
        return items

    def jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Up to `limit` jobs, newest first, optionally of one status and kind (all pages)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(200, limit - len(found))}
            if status:
                params["status"] = status
            if kind:
                params["kind"] = kind
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/jobs", params=params)
            found.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found[:limit]

    def results(self, job_id: int) -> list[dict[str, Any]]:
        """Every result row (one per insertion record) of a job, all pages."""
        rows: list[dict[str, Any]] = []
        for page in self._result_pages(job_id):
            rows.extend(page)
        return rows

    def _result_pages(self, job_id: int) -> Iterator[list[dict[str, Any]]]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"job_id": job_id, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/results", params=params)
            yield page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def results_csv(self, job_id: int) -> str:
        """A job's result rows as the server's CSV (header line first)."""
        response = self._send("GET", "/results", params={"job_id": job_id, "format": "csv"})
        return response.text

    def artifacts(self, job_id: int) -> list[dict[str, Any]]:
        """The files a job registered: name, size, sha256, url."""
        items: list[dict[str, Any]] = self._request("GET", f"/jobs/{job_id}/artifacts")["items"]
        return items

    def download(self, job_id: int, artifact: dict[str, Any], folder: Path) -> Path:
        """Stream one artifact into `folder` and check its size and sha256; returns the path."""
        name = Path(str(artifact["name"])).name
        target = folder / name
        partial = folder / f".{name}.part"
        digest = hashlib.sha256()
        try:
            # A server keeping artifacts in an object store may redirect to a presigned URL
            # (httpx drops the token on a redirect to another host); the sha256 is checked here.
            path = f"/jobs/{job_id}/artifacts/{name}"
            with self._http.stream("GET", path, follow_redirects=True) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_message(response), response.status_code)
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise ClientError(f"download of {name} from {self.server} failed: {exc}") from None
        expected = artifact.get("sha256")
        if expected and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ClientError(f"{name}: checksum mismatch (download corrupted?)", 0)
        partial.replace(target)
        return target
